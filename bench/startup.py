"""Startup time of the embedded local environment: `rtp deploy --env local --detach` until the API
answers a SigV4-signed request through a handler (GET /records/<id> -> 404 from the query function).

The synthesized template is cached (rtp_cli.synthcache); the first (cold) synth is measured separately
because it depends only on CDK/jsii start-up and runs once per change of stack, handler or config.
Usage: python -m bench startup [--runs N] [--cold]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ROOT = Path(__file__).resolve().parent.parent


def _rtp(args: list[str], state_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RTP_STATE_DIR": str(state_dir), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "rtp_cli.app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _answered(state: dict[str, str]) -> bool:
    url = state["url"] + "records/bench-probe"
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(
        Credentials(state["access_key_id"], state["secret_access_key"]), "execute-api", state["region"]
    ).add_auth(request)
    response = requests.get(url, headers=dict(request.headers), timeout=10)
    return response.status_code == 404 and "NOT_FOUND" in response.text


def one_run(state_dir: Path) -> float:
    started = time.perf_counter()
    deployed = _rtp(["deploy", "--env", "local", "--detach", "--port", "0"], state_dir)
    if deployed.returncode != 0:
        raise RuntimeError(deployed.stdout + deployed.stderr)
    state = json.loads((state_dir / "local.json").read_text())
    while not _answered(state):
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    stopped = _rtp(["destroy", "--env", "local"], state_dir)
    if stopped.returncode != 0:
        raise RuntimeError(stopped.stderr)
    return elapsed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench startup")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="also time a synth without the cache")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from rtp_cli.synthcache import synthesize_cached

    started = time.perf_counter()
    synthesize_cached("local", use_cache=not args.cold)
    synth_seconds = time.perf_counter() - started
    print(f"synth ({'cold' if args.cold else 'cache check'}): {synth_seconds:.2f} s")
    timings = []
    with tempfile.TemporaryDirectory(prefix="rtp-bench-") as tmp:
        for index in range(args.runs):
            seconds = one_run(Path(tmp))
            timings.append(seconds)
            print(f"run {index + 1}: {seconds:.2f} s", flush=True)
    print(
        "startup (rtp deploy --env local --detach -> signed request answered): "
        f"median {statistics.median(timings):.2f} s, min {min(timings):.2f} s, "
        f"max {max(timings):.2f} s over {len(timings)} runs"
    )
    return 0
