"""The incident issue 12 describes, end to end on the local runtime under `--watch`: a transform that rejects
one class of records is deployed, records arrive, the transform is fixed in place (a copy of handlers/,
never the repository's own transform.py), and `rtp replay --status REJECTED` (the real CLI, a subprocess)
runs those records through the fixed code: PROCESSED with the new transform version, counters exact,
nothing else touched. Then a replay killed halfway (SIGKILL) and resumed, and live traffic during a replay,
its ingest-to-processed latency measured against the ProcessingLag threshold of config/local.yaml.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rtp_cli.local.runtime import LocalEnvironment, write_state
from rtp_cli.local.testing import LocalInstance, rtp_argv, run_rtp, scan, wait_until, watched_handlers_copy
from rtp_cli.replay import ReplayJournal, Selection, plan_replay, send_replay, sources_for, wait_for_replay
from rtp_cli.watch import WatchEvent
from stack.config import load_config
from stack.synth import SynthResult

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
TRANSFORM = '''"""An incident's transform ({label})."""

from __future__ import annotations

from typing import Any

from rtp_pipeline.contract import RejectRecord, TransformContext


def transform(record: dict[str, Any], context: TransformContext) -> dict[str, Any]:
    data = record["data"]
    if not data:
        raise RejectRecord("data is empty: nothing to process")
    {bug}
    return {{"type": record["type"], "data": data, "label": "{label}"}}
'''
BUG = 'if data.get("unit") == "F":\n        raise RejectRecord("unit F is not supported")'


def source(label: str, buggy: bool) -> str:
    return TRANSFORM.format(label=label, bug=BUG if buggy else "pass")


def version_of(text: str) -> str:
    """The version the processor writes for a module without VERSION (contract.transform_version)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


@dataclass
class Incident:
    instance: LocalInstance
    environment: LocalEnvironment
    transform: Path
    events: list[WatchEvent]

    def deploy(self, text: str) -> None:
        """Save transform.py and wait until the processor runs it (the --watch reload)."""
        seen = len(self.events)
        self.transform.write_text(text, encoding="utf-8")
        wait_until(
            lambda: any(e.kind == "reloaded" for e in self.events[seen:]),
            30,
            "the transform to be reloaded",
            interval=0.05,
        )

    def post(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        response = self.instance.post_records(records)
        assert response.status_code == 202, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def batch(self, batch_id: str) -> dict[str, Any]:
        view: dict[str, Any] = self.instance.request("GET", f"batches/{batch_id}").json()
        return view

    def wait_complete(self, batch_ids: list[str], timeout: float = 180) -> None:
        wait_until(
            lambda: all(self.batch(batch_id).get("status") == "COMPLETE" for batch_id in batch_ids),
            timeout,
            "the batches to be processed",
            interval=0.5,
        )

    def items(self) -> dict[str, dict[str, Any]]:
        return {item["pk"]["S"].removeprefix("REC#"): item for item in scan(self.instance.target(), "REC#")}

    def rtp(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run_rtp(list(args), self.instance.state_dir, check=False, timeout=timeout)


@pytest.fixture(scope="module")
def incident(
    synthesized: Mapping[str, SynthResult], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Incident]:
    """`rtp deploy --env local --watch` on a copy of handlers/ whose transform.py rejects unit F records."""
    result = synthesized["local"]
    options, handlers, events = watched_handlers_copy(
        result.template_path, result.config.stack_name, tmp_path_factory.mktemp("incident-handlers")
    )
    (handlers / "transform.py").write_text(source("bug", buggy=True), encoding="utf-8")
    # An in-process runtime keeps its data in this process's moto backends, which outlive it: start from
    # empty ones and leave empty ones (tests/e2e/test_watch_loop.py starts another in this process).
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()
    environment = LocalEnvironment(options)
    state = environment.start()
    state_dir = tmp_path_factory.mktemp("incident-state")
    write_state(state_dir / "local.json", state)  # the CLI (a subprocess) finds this environment there
    try:
        yield Incident(LocalInstance(state, state_dir), environment, handlers / "transform.py", events)
    finally:
        environment.stop()
        moto_api_backend.reset()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def readings(count: int, every: int) -> list[dict[str, Any]]:
    """`count` readings, every `every`-th one in unit F (the class the bug rejects)."""
    return [
        {"type": "reading", "data": {"unit": "F" if n % every == 0 else "C", "n": n}} for n in range(count)
    ]


def test_bad_transform_fix_then_replay_rejected_records(incident: Incident) -> None:
    since = _now()
    batches = [incident.post(readings(120, every=3)) for _ in range(3)]
    empty = incident.post([{"type": "reading", "data": {}}, {"type": "reading", "data": {"unit": "C"}}])
    incident.wait_complete([b["batchId"] for b in [*batches, empty]])
    assert [incident.batch(b["batchId"])["rejected"] for b in batches] == [40, 40, 40]
    before = incident.items()

    fixed = source("fixed", buggy=False)
    incident.deploy(fixed)
    selection = ["--env", "local", "--since", since, "--status", "REJECTED", "--reason", "unit F"]
    dry = incident.rtp("replay", *selection, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)["plan"]
    assert (plan["requests"], plan["records"], plan["matchingRecords"]) == (3, 360, 120)
    s3 = incident.instance.aws("s3")
    sizes = [
        s3.head_object(Bucket=incident.instance.output("RawBucketName"), Key=key)["ContentLength"]
        for key in (_raw_key(incident, b["batchId"]) for b in batches)
    ]
    assert plan["bytes"] == sum(sizes) and plan["warning"] is None
    assert incident.items() == before  # a dry run sends nothing

    run = incident.rtp("replay", *selection, "--wait", "--timeout", "120", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["sent"]["requests"] == 3 and report["wait"]["complete"] is True
    assert report["wait"]["delta"] == {"processed": 120, "rejected": -120, "duplicates": 0}

    after = incident.items()
    replayed = {f"{b['batchId']}-{n}" for b in batches for n in range(0, 120, 3)}
    assert {record_id for record_id in after if after[record_id] != before.get(record_id)} == replayed
    for record_id in replayed:
        item = after[record_id]
        assert item["s"]["S"] == "P" and item["v"]["S"] == version_of(fixed)
        assert item["rp"]["S"] == report["replayId"] and item["ps"]["S"] in ("R", "REJECTED")
    assert {after[f"{b['batchId']}-1"]["v"]["S"] for b in batches} == {version_of(source("bug", True))}
    for batch in batches:
        view = incident.batch(batch["batchId"])
        assert (view["accepted"], view["processed"], view["rejected"], view["duplicates"]) == (120, 120, 0, 0)
    view = incident.batch(empty["batchId"])
    assert (view["processed"], view["rejected"]) == (1, 1)  # another reason: not selected, not touched

    again = incident.rtp("replay", *selection, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["plan"]["requests"] == 0


def _raw_key(incident: Incident, batch_id: str) -> str:
    from rtp_pipeline.storage import batch_pk

    db = incident.instance.aws("dynamodb")
    item = db.get_item(TableName=incident.instance.output("TableName"), Key={"pk": {"S": batch_pk(batch_id)}})
    return str(item["Item"]["rawKey"]["S"])


def test_a_replay_killed_halfway_and_resumed_replays_every_record_once(incident: Incident) -> None:
    incident.deploy(source("bug-2", buggy=True))
    since = _now()
    batches = [incident.post(readings(50, every=5)) for _ in range(12)]  # 10 unit F records each
    incident.wait_complete([b["batchId"] for b in batches])
    fixed = source("fixed-2", buggy=False)
    incident.deploy(fixed)

    selection = ["--env", "local", "--since", since, "--status", "REJECTED", "--reason", "unit F"]
    env = {**os.environ, "RTP_STATE_DIR": str(incident.instance.state_dir), "NO_COLOR": "1"}
    # 100 records/s: two 50-record requests per second, six seconds for the twelve
    killed = subprocess.Popen(
        [*rtp_argv(), "replay", *selection, "--rate", "100", "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    journals = ReplayJournal.directory(incident.instance.state_dir)
    key = Selection(since, None, (), "REJECTED", "unit F").key("local")
    path = journals / f"{key}.jsonl"
    wait_until(lambda: path.is_file() and '"kind":"sent"' in path.read_text(), 60, "a first send", 0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=10)
    journal = ReplayJournal.find(journals, key)
    assert journal is not None and not journal.done and 0 < len(journal.sent) < 12

    refused = incident.rtp("replay", *selection, "--json")
    assert refused.returncode == 2 and "--resume" in refused.stderr and str(path) in refused.stderr

    resumed = incident.rtp(
        "replay", *selection, "--resume", "--rate", "0", "--wait", "--timeout", "120", "--json"
    )
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["replayId"] == journal.replay_id and report["resumed"] is True
    assert report["sent"]["alreadySent"] == len(journal.sent)
    assert report["sent"]["requests"] == 12 - len(journal.sent)
    # counted from the first run's selection: every record replayed once across both runs
    assert report["wait"]["complete"] is True
    assert report["wait"]["delta"] == {"processed": 120, "rejected": -120, "duplicates": 0}
    items = incident.items()
    for batch in batches:
        view = incident.batch(batch["batchId"])
        assert (view["processed"], view["rejected"], view["duplicates"]) == (50, 0, 0)
        for n in range(0, 50, 5):
            item = items[f"{batch['batchId']}-{n}"]
            assert item["rp"]["S"] == journal.replay_id and item["v"]["S"] == version_of(fixed)


def test_live_traffic_during_a_replay_stays_under_the_processing_lag_threshold(incident: Incident) -> None:
    threshold = load_config("local").alarms.queue_oldest_message_age_seconds
    since = datetime.now(UTC) - timedelta(milliseconds=1)
    # 5,000 records (bench/replay.py measures 100,000): the local replay takes tens of seconds
    loaded = [incident.post(readings(500, every=1000)) for _ in range(10)]
    incident.wait_complete([b["batchId"] for b in loaded], timeout=300)
    sources = sources_for(incident.instance.target())
    plan = plan_replay(sources, Selection(since=since.isoformat(), until=_now()))
    assert plan.records == 5_000
    journal = ReplayJournal.start(incident.instance.state_dir / "bench-journals", "live", plan)

    live: list[dict[str, Any]] = []
    stop = threading.Event()

    def send_live() -> None:
        while not stop.is_set():
            live.append(incident.post(readings(5, every=1000)))
            time.sleep(0.25)

    sender = threading.Thread(target=send_live, daemon=True)
    started = time.monotonic()
    send_replay(sources, journal, rate=0)  # everything on the replay queue at once: the worst case
    sender.start()
    report = wait_for_replay(sources, plan, journal.replay_id, timeout=600, poll=0.5)
    replay_seconds = time.monotonic() - started
    during = len(live)
    stop.set()
    sender.join(timeout=30)
    assert report.complete and report.delta == {"processed": 0, "rejected": 0, "duplicates": 0}
    assert during >= 5, (
        f"only {during} live request(s) were sent while the replay ran ({replay_seconds:.1f} s)"
    )

    incident.wait_complete([b["batchId"] for b in live], timeout=120)
    latencies = []
    for batch in live:
        received = _moment(incident.batch(batch["batchId"])["receivedAt"])
        for record_id in batch["ids"]:
            stored = incident.instance.record_status(record_id)
            assert stored is not None and stored["status"] == "PROCESSED"
            latencies.append((_moment(stored["processedAt"]) - received).total_seconds())
    latencies.sort()
    median, worst = statistics.median(latencies), latencies[-1]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"replay of {plan.records} records: {replay_seconds:.1f} s "
        f"({plan.records / replay_seconds:.0f} records/s); "
        f"live latency during it: median {median:.2f} s, p99 {p99:.2f} s, max {worst:.2f} s "
        f"(ProcessingLag threshold {threshold} s)"
    )
    assert worst < threshold
    # Live records did not queue behind the replay: behind it, they would wait for half of it on average.
    assert median < replay_seconds / 3, (median, replay_seconds)


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
