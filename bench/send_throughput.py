"""Records/s of `rtp send --file` against the local stack (median of runs).

Starts a local environment from the synthesized `local` template (python -m rtp_cli.local.serve, as
`rtp deploy --env local --detach` does), generates a JSON Lines file and loads it with the real CLI
(`--restart` each run, so every run sends everything), then prints the median rate.

    .venv/bin/python -m bench.send_throughput [--records 10000] [--runs 3] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stack.synth import synthesize
from tests.operate.conftest import ROOT, rtp_argv, start_stack, stop_stack, tweak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.send_throughput")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--processor", action="store_true", help="keep the processor running (default: stopped)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rtp-bench-") as tmp:
        root = Path(tmp)
        synth = synthesize("local", root / "cdk.out")
        stack = start_stack(
            root / "stack", synth.template_path, tweak(synth.template, esm_enabled=args.processor), None
        )
        try:
            data = root / "records.jsonl"
            data.write_text(
                "".join(
                    json.dumps({"type": "bench", "data": {"n": n, "pad": "x" * 64}}) + "\n"
                    for n in range(args.records)
                )
            )
            rates = []
            for run in range(args.runs):
                started = time.monotonic()
                result = subprocess.run(
                    [
                        *rtp_argv(),
                        "send",
                        "--file",
                        str(data),
                        "--restart",
                        "--concurrency",
                        str(args.concurrency),
                    ],
                    cwd=ROOT,
                    env=stack.env(),
                    capture_output=True,
                    text=True,
                    check=False,
                )
                wall = time.monotonic() - started
                if result.returncode != 0:
                    print(result.stdout, result.stderr, file=sys.stderr)
                    return 1
                match = re.search(r"([\d,]+) records/s", result.stdout)
                inner = float(match.group(1).replace(",", "")) if match else 0.0
                rates.append(inner)
                print(
                    f"run {run + 1}: {inner:,.0f} records/s (send phase), "
                    f"{args.records / wall:,.0f} records/s wall incl. CLI start"
                )
            print(
                f"median: {statistics.median(rates):,.0f} records/s over {args.runs} runs "
                f"of {args.records} records "
                f"(concurrency {args.concurrency}, processor {'running' if args.processor else 'stopped'})"
            )
        finally:
            stop_stack(stack)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
