"""How many requests a transient transform fault sends to the dead-letter queue.

The load of issue 8: requests of 50 records, a transform that fails 2 % of its calls at random (a
transient fault in the transform contract's sense), the `local` template's maxReceiveCount (3). The
handlers run in-process against moto (rtp_cli/local/inprocess.py), which plays the event source mapping
with failed messages visible again at once; one fresh account per run.

    .venv/bin/python -m bench transient_faults [--runs 5] [--requests 10] [--records 50] [--rate 0.02]

Before the change (commit ff5dc28) each redelivery re-ran all 50 records, so a message failed whenever
any of them failed: 53 of 200 requests were dead-lettered (--runs 20); after it, 0 of 200.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
from pathlib import Path

from bench._flaky_load import run_flaky_load
from rtp_cli.local.inprocess import standalone_pipeline
from stack.synth import synthesize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.transient_faults")
    parser.add_argument("--runs", type=int, default=5, help="runs, seeds 0..runs-1")
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--records", type=int, default=50)
    parser.add_argument("--rate", type=float, default=0.02, help="fraction of transform calls that fail")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rtp-bench-") as tmp:
        template = synthesize("local", Path(tmp) / "cdk.out").template
    dead, seconds = [], []
    for seed in range(args.runs):
        # The functions' JSON logs and EMF metrics go to stdout, as in Lambda: not in this report.
        with standalone_pipeline(template) as pipeline, contextlib.redirect_stdout(io.StringIO()):
            load = run_flaky_load(
                pipeline, rate=args.rate, seed=seed, requests=args.requests, records=args.records
            )
        dead.append(load.dead_lettered)
        seconds.append(load.seconds)
        print(
            f"seed {seed}: {load.dead_lettered} of {load.requests} requests dead-lettered; "
            f"{load.complete} complete, {load.stored} of {load.records} records stored; "
            f"{load.failed_calls} injected faults in {load.transform_calls} transform calls; "
            f"{load.deliveries} deliveries; {load.seconds:.1f} s",
            flush=True,
        )
    total = args.runs * args.requests
    print(
        f"dead-lettered: {sum(dead)} of {total} requests ({100 * sum(dead) / total:.1f} %) at "
        f"{100 * args.rate:g} % faults per call, maxReceiveCount {pipeline.max_receive_count}; "
        f"median run {statistics.median(seconds):.1f} s"
    )
    return 0
