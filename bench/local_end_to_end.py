"""Records per second through the whole local pipeline: `rtp send --file ... --wait` of N 1 KB records
against `rtp deploy --env local`, from the first request until every batch is COMPLETE (ingest, S3, SQS,
the processor and DynamoDB, all in the local emulation). Issue 10's target: >= 2,000 records/s for 50,000
records (735/s measured before the storage redesign).

    python -m bench local_end_to_end [--records 50000] [--runs 3] [--named] [--baseline CHECKOUT]

Prints each run with the 1-minute load average at its end (other work on the machine slows it), then the
median over the runs and its ratio to the 2,000 records/s target (and to the baseline's median, run in
turn with this checkout, when `--baseline` names another checkout).

`--named` gives every record a client id (PartiQL INSERTs, 25 a BatchExecuteStatement, instead of
BatchWriteItem).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rtp_cli.paths import PROJECT_ROOT

TARGET_RPS = 2000
BEFORE_RPS = 735
RECORD_BYTES = 1024
# `python -m` puts the working directory first on sys.path: run in another checkout, its code is measured.
RTP = [sys.executable, "-m", "rtp_cli.app"]


def write_records(path: Path, count: int, named: bool, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w") as out:
        for n in range(count):
            record: dict[str, object] = {"type": "reading", "data": {"n": n, "pad": ""}}
            if named:
                record["id"] = f"e2e-{seed}-{n}"
            pad = RECORD_BYTES - len(json.dumps(record)) - 1
            record["data"] = {"n": n, "pad": rng.randbytes(max(pad, 0) // 2 + 1).hex()[: max(pad, 0)]}
            out.write(json.dumps(record) + "\n")


def start_local(state_dir: Path, project: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "RTP_STATE_DIR": str(state_dir), "NO_COLOR": "1"}
    command = [*RTP, "deploy", "--env", "local", "--port", "0", "--no-logs"]
    process = subprocess.Popen(
        command, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if json.loads((state_dir / "local.json").read_text()).get("pid") == process.pid:
                return process
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        if process.poll() is not None:
            raise RuntimeError("rtp deploy --env local exited before it was ready")
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("rtp deploy --env local was not ready within 180 s")


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU so far of a process and its live descendants (the runtime and its Lambda
    workers; Linux /proc, None elsewhere)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, of in parents.items() if of == parent and child not in tree]
        tree.update(children)
        frontier.extend(children)
    total = 0.0
    for member in tree:
        seconds = process_cpu_seconds(member)
        if seconds is None and member == pid:
            return None
        total += seconds or 0.0
    return total


def machine_ticks() -> tuple[int, int] | None:
    """(busy, total) CPU ticks of the whole machine so far, every process's (Linux /proc/stat)."""
    try:
        ticks = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # idle and iowait are not busy


def busy_cores(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Cores the whole machine kept busy on average between two `machine_ticks`."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)


def _children_cpu_seconds() -> float:
    """User + system CPU of this process's finished (waited for) children: the `rtp send` client."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def aws_calls(state_dir: Path) -> dict[str, dict[str, float]]:
    """The running local environment's per-operation AWS call statistics ({} if it has none: an older
    checkout)."""
    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    state = json.loads((state_dir / "local.json").read_text())
    base = state["url"].split("/", 3)
    url = f"{base[0]}//{base[2]}/_rtp/aws-calls"  # the runtime's admin route, signed like the API
    signed = AWSRequest(method="GET", url=url)
    keys = Credentials(state["access_key_id"], state["secret_access_key"])
    SigV4Auth(keys, "execute-api", state["region"]).add_auth(signed)
    try:
        answer = requests.get(url, headers=dict(signed.headers), timeout=10)
    except requests.RequestException:
        return {}
    calls: dict[str, dict[str, float]] = answer.json() if answer.ok else {}
    return calls


def cpu_report(records: int, cpu: float | None, before: dict[str, Any], after: dict[str, Any]) -> str:
    """One line: the runtime's CPU per record and the emulation's top operations during the send."""
    if cpu is None:
        return "runtime CPU not measured"
    line = f"runtime process CPU {cpu / records * 1000:.3f} ms/record"
    spent = {
        name: (
            after[name]["calls"] - before.get(name, {}).get("calls", 0),
            after[name]["cpu_seconds"] - before.get(name, {}).get("cpu_seconds", 0.0),
        )
        for name in after
    }
    spent = {name: (calls, seconds) for name, (calls, seconds) in spent.items() if calls}
    if not spent:
        return line
    total = sum(seconds for _, seconds in spent.values())
    top = sorted(spent.items(), key=lambda kv: -kv[1][1])[:5]
    parts = [
        f"{name} {seconds / records * 1000:.3f} ({calls / records * 1000:.0f}/1k records, "
        f"{seconds / calls * 1000:.1f} ms each)"
        for name, (calls, seconds) in top
    ]
    return line + f", of it AWS emulation {total / records * 1000:.3f}: " + "; ".join(parts)


def measured_run(records: int, named: bool, seed: int, project: Path = PROJECT_ROOT) -> tuple[float, str]:
    """Records per second, and where the runtime's CPU went (`cpu_report`)."""
    with tempfile.TemporaryDirectory(prefix="rtp-e2e-bench-") as tmp:
        root = Path(tmp)
        data = root / "records.jsonl"
        write_records(data, records, named, seed)
        local = start_local(root / "state", project)
        try:
            env = {**os.environ, "RTP_STATE_DIR": str(root / "state"), "NO_COLOR": "1", "COLUMNS": "200"}
            calls_before, cpu_before = aws_calls(root / "state"), process_cpu_seconds(local.pid)
            tree_before, client_before = tree_cpu_seconds(local.pid), _children_cpu_seconds()
            machine_before = machine_ticks()
            started = time.monotonic()
            done = subprocess.run(
                [*RTP, "send", "--env", "local", "--file", str(data), "--wait", "--timeout", "1800"],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            elapsed = time.monotonic() - started
            cpu_after, tree_after = process_cpu_seconds(local.pid), tree_cpu_seconds(local.pid)
            client = _children_cpu_seconds() - client_before
            busy = busy_cores(machine_before, machine_ticks())
            cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
            report = cpu_report(records, cpu, calls_before, aws_calls(root / "state"))
            if tree_before is not None and tree_after is not None:
                report = (
                    f"all processes CPU {(tree_after - tree_before + client) / records * 1000:.3f} ms/record "
                    f"(Lambda workers {(tree_after - tree_before - (cpu or 0.0)) / records * 1000:.3f}, "
                    f"rtp send {client / records * 1000:.3f}); " + report
                )
            if busy is not None:  # more than this run's processes used: other work shared the machine
                report = f"machine busy {busy:.2f} of {os.cpu_count()} cores; " + report
        finally:
            local.send_signal(signal.SIGINT)
            local.wait(timeout=60)
        out = " ".join(done.stdout.split())
        if done.returncode != 0 or not re.search(rf"processed {records}\b", out):
            raise RuntimeError(
                f"rtp send failed or did not process everything:\n{done.stdout}\n{done.stderr}"
            )
        return records / elapsed, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench local_end_to_end", description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--named", action="store_true", help="records carry client ids")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (e.g. before a change), measured in turn with this one",
    )
    args = parser.parse_args(argv)
    rates, before, loads = [], [], []
    for run in range(args.runs):
        rate, report = measured_run(args.records, args.named, run)
        rates.append(rate)
        loads.append(os.getloadavg()[0])
        print(
            f"run {run + 1}: {rates[-1]:,.0f} records/s ({args.records:,} records, send until all COMPLETE; "
            f"load average {loads[-1]:.1f}); {report}"
        )
        if args.baseline:
            rate, report = measured_run(args.records, args.named, run, args.baseline.resolve())
            before.append(rate)
            loads.append(os.getloadavg()[0])
            print(f"run {run + 1}, baseline: {rate:,.0f} records/s (load average {loads[-1]:.1f}); {report}")
    median = statistics.median(rates)
    ids = "named" if args.named else "assigned"
    line = (
        f"median {median:,.0f} records/s over {args.runs} run(s), ids {ids}, median load average "
        f"{statistics.median(loads):.1f}; target >= {TARGET_RPS:,}: {median / TARGET_RPS:.2f} of it, "
    )
    line += "met" if median >= TARGET_RPS else "NOT met"
    if before:
        ratio = statistics.median(r / b for r, b in zip(rates, before, strict=True))
        line += f"; baseline {statistics.median(before):,.0f} records/s, ratio {ratio:.2f}x"
    print(line + f" (issue 10 measured {BEFORE_RPS} records/s before the redesign)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
