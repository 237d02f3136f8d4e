"""The inner loop on local: save-to-running latency of `rtp deploy --env local --watch`, and the round trip
of `rtp invoke` against the running environment.

Starts the real CLI in the foreground with `--watch --transform bench_tx:transform` (a temporary module,
never the repository's files), then for each edit: writes a new variant of the transform and polls
`/_rtp/watch` until the processor reports the new file (sha256) as running. Two figures per edit:

- saved -> running: the file's mtime to the moment new invocations went to the new code (server clock);
- seen by a client: from just before the write until a poll (every 5 ms) shows it, HTTP included.

After each edit one record is sent and its stored result must carry the new variant (it really runs).
Then `rtp invoke` round trips: the service call (`rtp_cli.invoke.invoke`, warm, what the CLI does after
start-up) and the whole CLI process (`rtp invoke query --generate api`, Python start-up included).

    .venv/bin/python -m bench inner_loop [--edits 10] [--invokes 20] [--cli-invokes 5] [--pause 1.0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TRANSFORM = """from transform import transform as default_transform

VARIANT = {variant!r}


def transform(record, context):
    result = default_transform(record, context)
    result["variant"] = VARIANT
    return result
"""


def _summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return (
        f"{name}: median {statistics.median(ordered):.0f} ms, p90 {p90:.0f} ms, "
        f"min {ordered[0]:.0f} ms, max {ordered[-1]:.0f} ms (n={len(ordered)})"
    )


def _start(work: Path, state_dir: Path) -> tuple[subprocess.Popen[str], dict[str, Any], list[str]]:
    env = {**os.environ, "RTP_STATE_DIR": str(state_dir), "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("RTP_LOCAL_TRANSFORM", None)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "rtp_cli.app", "deploy", "--env", "local", "--watch", "--no-logs"),
            *("--port", "0", "--transform", "bench_tx:transform"),
        ],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    stream = process.stdout
    assert stream is not None
    threading.Thread(target=lambda: output.extend(iter(stream.readline, "")), daemon=True).start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            state: dict[str, Any] = json.loads((state_dir / "local.json").read_text())
            if state.get("pid") == process.pid:
                return process, state, output
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("the watched local environment did not start:\n" + "".join(output))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench inner_loop")
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--invokes", type=int, default=20)
    parser.add_argument("--cli-invokes", type=int, default=5)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between saves")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from rtp_cli import invoke as invoke_service
    from rtp_cli.target import local_target

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="rtp-bench-loop-") as tmp:
        work = Path(tmp)
        state_dir = work / "state"
        module = work / "bench_tx.py"
        module.write_text(TRANSFORM.format(variant="v0"), encoding="utf-8")
        process, _, _ = _start(work, state_dir)
        try:
            target = local_target(state_dir / "local.json")
            time.sleep(1.0)  # the spare workers finish preloading, as they have when a person first saves
            saved_to_running: list[float] = []
            seen_by_client: list[float] = []
            for edit in range(1, args.edits + 1):
                text = TRANSFORM.format(variant=f"v{edit}")
                digest = hashlib.sha256(text.encode()).hexdigest()
                before = time.time()
                module.write_text(text, encoding="utf-8")
                event = _wait_for_reload(invoke_service, target, str(module.resolve()), digest, before)
                seen_by_client.append((time.time() - before) * 1000)
                saved_to_running.append(float(event["latency_ms"]))
                _check_variant(target, f"v{edit}")
                time.sleep(args.pause)
            print(_summary(f"--watch saved -> running ({args.edits} edits)", saved_to_running))
            print(_summary("--watch save -> seen running by a client", seen_by_client))

            generated = invoke_service.generate(target, "query", "api")
            round_trips, durations = [], []
            for _ in range(args.invokes):
                result = invoke_service.invoke(target, "query", generated.event)
                assert result.ok, result.to_dict()
                round_trips.append(result.round_trip_ms)
                durations.append(float(result.duration_ms or 0))
            print(_summary("rtp invoke query, service round trip (warm)", round_trips))
            print(_summary("  of which the function's own duration", durations))
            cli: list[float] = []
            env = {**os.environ, "RTP_STATE_DIR": str(state_dir), "NO_COLOR": "1"}
            for _ in range(args.cli_invokes):
                started = time.perf_counter()
                completed = subprocess.run(
                    [sys.executable, "-m", "rtp_cli.app", "invoke", "query", "--generate", "api", "--json"],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                cli.append((time.perf_counter() - started) * 1000)
                if completed.returncode != 0:
                    raise RuntimeError(completed.stdout + completed.stderr)
            print(_summary("rtp invoke query --generate api, whole CLI process", cli))
            baseline: list[float] = []
            for _ in range(args.cli_invokes):
                started = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "rtp_cli.app", "--help"],
                    cwd=ROOT,
                    capture_output=True,
                    check=False,
                )
                baseline.append((time.perf_counter() - started) * 1000)
            print(_summary("  for comparison, `rtp --help` (the CLI's own start-up)", baseline))
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    load_after = os.getloadavg()[0]
    print(f"load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} CPUs")
    return 0


def _wait_for_reload(
    invoke_service: Any, target: Any, path: str, digest: str, since: float, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = invoke_service._local_admin(target, "watch", None, timeout=10)
        for event in status["events"]:
            if event["at"] < since:
                continue
            if event["kind"] == "error":
                raise RuntimeError(f"the watcher reported an error: {event}")
            if event["kind"] == "reloaded" and event["files"].get(path) == digest:
                return dict(event)
        time.sleep(0.005)
    raise RuntimeError(f"no reload of {path} within {timeout}s")


def _check_variant(target: Any, variant: str) -> None:
    """One record through the API; its stored result must come from the new code."""
    from rtp_cli.operate.api_client import ApiClient

    api = ApiClient(target.api_url, target.region, target.credentials)
    record_id = f"bench-{uuid.uuid4().hex[:12]}"
    body = json.dumps({"records": [{"id": record_id, "type": "bench", "data": {"n": 1}}]}).encode()
    accepted = api.request("POST", "/records", body)
    if accepted.status != 202:
        raise RuntimeError(f"POST /records answered {accepted.status}: {accepted.body}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = api.request("GET", f"/records/{record_id}")
        if found.status == 200 and isinstance(found.body, dict) and found.body.get("status") == "PROCESSED":
            if found.body["result"].get("variant") != variant:
                raise RuntimeError(
                    f"record {record_id} was processed by {found.body['result'].get('variant')}"
                )
            return
        time.sleep(0.05)
    raise RuntimeError(f"record {record_id} was not processed within 30 s")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
