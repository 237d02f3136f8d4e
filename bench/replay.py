"""Replay throughput and live latency during a replay on `rtp deploy --env local` (issue 12).

Loads N records (`rtp send --file ... --wait`, 500 per request), then replays every request of that window
(`rtp_cli.replay`: plan, send to the replay queue at `--rate`, wait until every chunk is settled) while live
requests of 5 records arrive every 0.25 s. Reports the replay's records/s (first send to last chunk
settled) and the live records' ingest-to-processed latency (median, p99, max) against the ProcessingLag
alarm threshold of config/local.yaml (`alarms.queue_oldest_message_age_seconds`).

    python -m bench replay [--records 100000] [--rate 0]

The issue asks for a 100,000-record replay: the default. `--records 5000` is a quick run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rtp_cli.paths import PROJECT_ROOT

LIVE_RECORDS = 5
LIVE_INTERVAL = 0.25


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run(records: int, rate: float, state_dir: Path) -> dict[str, Any]:
    from rtp_cli.local.testing import api_client, rtp_argv, start_local, stop_local
    from rtp_cli.operate.api_client import encode
    from rtp_cli.replay import (
        ReplayJournal,
        Selection,
        plan_replay,
        send_replay,
        sources_for,
        wait_for_replay,
    )
    from stack.config import load_config

    threshold = load_config("local").alarms.queue_oldest_message_age_seconds
    instance = start_local(state_dir / "state")
    try:
        client = api_client(instance)
        data = state_dir / "records.jsonl"
        with data.open("w") as out:
            for n in range(records):
                out.write(json.dumps({"type": "reading", "data": {"n": n, "unit": "C"}}) + "\n")
        since = datetime.now(UTC) - timedelta(milliseconds=1)
        env = {**os.environ, "RTP_STATE_DIR": str(state_dir / "state"), "NO_COLOR": "1"}
        loaded_at = time.monotonic()
        subprocess.run(
            [*rtp_argv(), "send", "--env", "local", "--file", str(data), "--wait", "--timeout", "3600"],
            cwd=PROJECT_ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        load_seconds = time.monotonic() - loaded_at
        sources = sources_for(instance.target())
        plan = plan_replay(sources, Selection(since=_iso(since), until=_iso(datetime.now(UTC))))
        assert plan.records == records, (plan.records, records)
        journal = ReplayJournal.start(state_dir / "journals", "bench", plan)

        live: list[dict[str, Any]] = []
        stop = threading.Event()

        def send_live() -> None:
            while not stop.is_set():
                body = {"records": [{"type": "reading", "data": {"live": n}} for n in range(LIVE_RECORDS)]}
                answer = client.post_records(encode(body))
                if answer.status == 202:
                    live.append(answer.body)
                time.sleep(LIVE_INTERVAL)

        started = time.monotonic()
        sender = threading.Thread(target=send_live, daemon=True)
        sender.start()
        sent = send_replay(sources, journal, rate)
        waited = wait_for_replay(sources, plan, journal.replay_id, timeout=4 * 3600, poll=1)
        replay_seconds = time.monotonic() - started
        stop.set()
        sender.join(timeout=30)
        latencies = []
        deadline = time.monotonic() + 300
        for batch in live:
            for record_id in batch["ids"]:
                while True:
                    stored = instance.record_status(record_id)
                    if stored is not None or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                if stored is not None:
                    view = client.get_batch(batch["batchId"]).body
                    latencies.append(
                        (_moment(stored["processedAt"]) - _moment(view["receivedAt"])).total_seconds()
                    )
        latencies.sort()
        return {
            "records": records,
            "loadSeconds": round(load_seconds, 1),
            "replaySeconds": round(replay_seconds, 1),
            "replayRecordsPerSecond": round(records / replay_seconds, 1),
            "sendSeconds": round(sent.elapsed, 2),
            "complete": waited.complete,
            "delta": waited.delta,
            "liveRecords": len(latencies),
            "liveLatencySeconds": {
                "median": round(statistics.median(latencies), 3) if latencies else None,
                "p99": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 3)
                if latencies
                else None,
                "max": round(latencies[-1], 3) if latencies else None,
            },
            "processingLagThresholdSeconds": threshold,
        }
    finally:
        stop_local(instance)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="records loaded then replayed")
    parser.add_argument(
        "--rate", type=float, default=0, help="rtp replay --rate (0: no limit, the worst case)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rtp-replay-bench-") as tmp:
        result = run(args.records, args.rate, Path(tmp))
    print(json.dumps(result, indent=2))
    latency = result["liveLatencySeconds"]
    threshold = result["processingLagThresholdSeconds"]
    ok = result["complete"] and latency["max"] is not None and latency["max"] < threshold
    print(
        f"replay: {result['records']:,} records in {result['replaySeconds']:,.1f} s "
        f"({result['replayRecordsPerSecond']:,.0f} records/s); live latency during it: median "
        f"{latency['median']} s, p99 {latency['p99']} s, max {latency['max']} s "
        f"(ProcessingLag threshold {threshold} s): {'within' if ok else 'NOT within'}",
        flush=True,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
