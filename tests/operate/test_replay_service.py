"""`rtp replay`'s service in process, against the `local` template's resources in moto with the real
handlers (the `pipeline` fixture of tests/operate/conftest.py): requests go in through the ingest function
and are processed by the processor, exactly as in the pipeline; the service then selects, sizes and sends
them.

Selection (window, batch ids, status + reason through the REJECTED listing of the query function), the
dry-run figures, the retention warning, the claim checks on the replay queue, the journal across a kill,
and --wait on the batch items' `rc` set. The rate limit runs on an injected clock (no sleeps).
"""

from __future__ import annotations

import functools
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rtp_pipeline.storage import ClaimCheck, PipelineTable

from rtp_cli.local.inprocess import Pipeline, proxy_event
from rtp_cli.replay import (
    JournalError,
    Plan,
    ReplayError,
    ReplayJournal,
    Selection,
    Sources,
    batch_time,
    chunks_left,
    open_journal,
    plan_replay,
    send_replay,
    wait_for_replay,
)
from stack.config import load_config
from tests.operate.test_replay_unit import FakeClock


class _Answer:
    """The query function's answer as rtp_cli.records.Response."""

    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error_message(self) -> str:
        return str((self.body or {}).get("message", "")) if isinstance(self.body, dict) else ""


def _fetch(pipeline: Pipeline) -> Any:
    """GET on the API through the template's query function (in process)."""
    from urllib.parse import parse_qsl, urlsplit

    def fetch(path: str) -> _Answer:
        parts = urlsplit(path)
        params = dict(parse_qsl(parts.query))
        event = proxy_event("GET", parts.path, resource="/records")
        event["queryStringParameters"] = params or None
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in params.items()} or None
        answer = pipeline.api("query", event)
        return _Answer(answer.status, answer.body)

    return fetch


def sources_of(pipeline: Pipeline) -> Sources:
    return Sources(
        env="local",
        table=PipelineTable(pipeline.dynamodb, pipeline.table_name),
        s3=pipeline.s3,
        bucket=pipeline.bucket,
        sqs=pipeline.sqs,
        queue_url=pipeline.replay_queue_url,
        config=load_config("local"),
        fetch=_fetch(pipeline),
    )


def post(pipeline: Pipeline, records: list[dict[str, Any]]) -> dict[str, Any]:
    answer = pipeline.post_records({"records": records})
    assert answer.status == 202, answer.body
    body: dict[str, Any] = answer.body
    return body


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def good(count: int, tag: str = "g") -> list[dict[str, Any]]:
    return [{"type": "reading", "data": {"tag": tag, "n": n}} for n in range(count)]


def replay_messages(pipeline: Pipeline) -> list[ClaimCheck]:
    """Every claim check on the replay queue (received and deleted: the test's view of what was sent)."""
    claims: list[ClaimCheck] = []
    while True:
        got = pipeline.sqs.receive_message(QueueUrl=pipeline.replay_queue_url, MaxNumberOfMessages=10)
        messages = got.get("Messages", [])
        if not messages:
            return claims
        for message in messages:
            claims.append(ClaimCheck.from_json(message["Body"]))
            pipeline.sqs.delete_message(
                QueueUrl=pipeline.replay_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )


def object_size(pipeline: Pipeline, key: str) -> int:
    return int(pipeline.s3.head_object(Bucket=pipeline.bucket, Key=key)["ContentLength"])


# --- selection -------------------------------------------------------------------------------------------
def test_a_window_selects_the_requests_with_a_batch_and_counts_refused_ones(pipeline: Pipeline) -> None:
    first = post(pipeline, good(3))
    second = post(pipeline, good(120))  # two chunks
    refused = pipeline.post_records({"records": [{"type": "reading"}]})  # no data: refused, kept raw
    assert refused.status == 400
    pipeline.drain()
    plan = plan_replay(sources_of(pipeline), Selection(since="1h"))

    assert [c.batch_id for c in plan.candidates] == [first["batchId"], second["batchId"]]
    assert (plan.requests, plan.records) == (2, 123)
    keys = {c.batch_id: c.key for c in plan.candidates}
    assert plan.bytes == sum(object_size(pipeline, key) for key in keys.values())
    assert len(pipeline.raw_keys()) == 3 and plan.skipped == {"no batch item": 1}
    assert any("refused" in note for note in plan.notes)
    assert plan.warning is None  # 1 h is well inside local's 1 day
    assert plan.candidates[1].chunks == 2 and plan.candidates[1].counts["processed"] == 120


def test_a_window_keeps_only_requests_received_in_it(pipeline: Pipeline) -> None:
    early = post(pipeline, good(1))
    time.sleep(0.01)
    late = post(pipeline, good(1))
    split = batch_time(late["batchId"])
    assert batch_time(early["batchId"]) < split
    sources = sources_of(pipeline)
    at = split.isoformat().replace("+00:00", "Z")
    assert [c.batch_id for c in plan_replay(sources, Selection(since=at)).candidates] == [late["batchId"]]
    before = (split - timedelta(milliseconds=1)).isoformat().replace("+00:00", "Z")
    selected = plan_replay(sources, Selection(since="1h", until=before)).candidates
    assert [c.batch_id for c in selected] == [early["batchId"]]


def test_batch_ids_select_those_batches_and_an_unknown_one_stops_everything(pipeline: Pipeline) -> None:
    one, _, three = (post(pipeline, good(2)) for _ in range(3))
    sources = sources_of(pipeline)
    plan = plan_replay(sources, Selection(batch_ids=(three["batchId"], one["batchId"], one["batchId"])))
    assert [c.batch_id for c in plan.candidates] == [one["batchId"], three["batchId"]]  # oldest first, once
    assert plan.bytes == sum(object_size(pipeline, c.key) for c in plan.candidates)

    unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    with pytest.raises(ReplayError, match=f"no batch {unknown}") as error:
        plan_replay(sources, Selection(batch_ids=(one["batchId"], unknown)))
    assert error.value.exit_code == 1
    with pytest.raises(ReplayError, match="26 or 27 characters") as error:
        plan_replay(sources, Selection(batch_ids=("nope",)))
    assert error.value.exit_code == 2
    assert replay_messages(pipeline) == []  # nothing sent by a plan


def test_a_batch_whose_raw_object_expired_is_skipped_with_a_note(pipeline: Pipeline) -> None:
    kept, gone = post(pipeline, good(1)), post(pipeline, good(1))
    sources = sources_of(pipeline)
    key = plan_replay(sources, Selection(batch_ids=(gone["batchId"],))).candidates[0].key
    pipeline.s3.delete_object(Bucket=pipeline.bucket, Key=key)  # what S3 Lifecycle expiry does
    plan = plan_replay(sources, Selection(batch_ids=(kept["batchId"], gone["batchId"])))
    assert [c.batch_id for c in plan.candidates] == [kept["batchId"]]
    assert plan.skipped == {"raw object gone": 1} and any("raw_objects_days" in n for n in plan.notes)


def test_status_rejected_selects_the_batches_of_the_listing_with_the_filter(pipeline: Pipeline) -> None:
    clean = post(pipeline, good(5))
    empty = post(pipeline, [*good(3), {"type": "reading", "data": {}}, {"type": "reading", "data": {}}])
    future = post(pipeline, [{"type": "reading", "data": {"n": 1}, "timestamp": "2099-01-01T00:00:00Z"}])
    pipeline.drain()
    sources = sources_of(pipeline)

    plan = plan_replay(sources, Selection(since="1h", status="REJECTED"))
    assert {c.batch_id for c in plan.candidates} == {empty["batchId"], future["batchId"]}
    assert clean["batchId"] not in {c.batch_id for c in plan.candidates}
    assert plan.listed_records == 3 and {c.batch_id: c.matching for c in plan.candidates} == {
        empty["batchId"]: 2,
        future["batchId"]: 1,
    }
    assert plan.filter()["status"] == "REJECTED" and plan.filter()["processedFrom"] == plan.since
    until = datetime.fromisoformat(str(plan.until).replace("Z", "+00:00"))  # included by the listing
    end = until + timedelta(milliseconds=1)  # excluded by the processor's filter
    assert plan.filter()["processedTo"] == end.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    only_empty = plan_replay(sources, Selection(since="1h", status="REJECTED", reason="data is empty"))
    assert [c.batch_id for c in only_empty.candidates] == [empty["batchId"]]
    assert only_empty.reason == "data is empty" and only_empty.listed_records == 2

    sent = send_replay(sources, ReplayJournal.start(_tmp(pipeline), "k", only_empty), rate=0)
    [claim] = replay_messages(pipeline)
    assert sent.requests == 1 and claim.batch_id == empty["batchId"] and claim.record_count == 5
    assert claim.replay is not None and claim.replay.replay_id == sent.replay_id
    assert (claim.replay.status, claim.replay.reason) == ("REJECTED", "data is empty")
    assert (claim.replay.processed_from, claim.replay.processed_to) == (
        only_empty.processed_from,
        only_empty.processed_to,
    )
    assert (claim.bucket, claim.key) == (pipeline.bucket, only_empty.candidates[0].key)


def _tmp(pipeline: Pipeline) -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="replay-journal-"))


@pytest.mark.parametrize(
    ("selection", "words"),
    [
        (Selection(), "select what to replay"),
        (Selection(until="1h"), "--until needs --since"),
        (Selection(since="1h", status="DONE"), "PROCESSED or REJECTED"),
        (Selection(since="1h", reason="x"), "add --status REJECTED"),
        (Selection(since="yesterday"), "is neither an RFC 3339 time"),
        (Selection(since="1h", until="2h"), "since: must not be after until"),
        (Selection(since="500d"), "at most 400 days"),
    ],
)
def test_bad_selections_are_usage_errors(selection: Selection, words: str) -> None:
    """Refused before anything is read: sources without clients would fail any call."""
    nothing = Sources(env="local", table=None, s3=None, bucket="", sqs=None, queue_url="")
    with pytest.raises(ReplayError, match=words) as error:
        plan_replay(nothing, selection)
    assert error.value.exit_code == 2


# --- the retention warning --------------------------------------------------------------------------------
def test_a_window_past_the_retention_is_warned_about(pipeline: Pipeline) -> None:
    post(pipeline, good(1))
    sources = sources_of(pipeline)
    assert sources.config is not None and sources.config.retention.raw_objects_days == 1  # local.yaml
    plan = plan_replay(sources, Selection(since="2d"))
    assert plan.requests == 1  # what is still there is replayed all the same
    assert plan.warning is not None and "retention.raw_objects_days" in plan.warning
    assert plan_replay(sources, Selection(since="23h")).warning is None


def test_a_dry_run_notes_the_part_of_the_window_in_a_colder_storage_class(pipeline: Pipeline) -> None:
    """Seen from 60 and from 29 days after the request (`now`), so the window lists two hours of raw
    objects, not the 60 days of hours (one ListObjectsV2 each) of a `--since 60d` run today."""
    received = batch_time(post(pipeline, good(1))["batchId"])
    hour = timedelta(hours=1)
    around = Selection(since=_rfc3339(received - hour), until=_rfc3339(received + hour))
    sources = sources_of(pipeline)
    local = load_config("local")
    retention = local.retention.model_copy(
        update={
            "raw_objects_days": 120,
            "record_ttl_days": 120,
            "raw_transition_days": 30,
            "raw_storage_class": "GLACIER_IR",
        }
    )
    sources.config = local.model_copy(update={"retention": retention})
    plan = plan_replay(sources, around, now=received + timedelta(days=60))
    assert plan.warning is None and plan.requests == 1
    assert any("GLACIER_IR" in note and "retrieval fee" in note for note in plan.notes), plan.notes
    still_standard = plan_replay(sources, around, now=received + timedelta(days=29))
    assert still_standard.requests == 1 and not [n for n in still_standard.notes if "GLACIER_IR" in n]


# --- sending, the journal ---------------------------------------------------------------------------------
class _KilledError(BaseException):
    """Stands in for SIGKILL/Ctrl-C: not an Exception, nothing catches it on the way out."""


class _Sqs:
    """The replay queue's client, killed at a chosen point of the n-th SendMessageBatch."""

    def __init__(self, sqs: Any, kill_before_call: int | None = None, kill_after_call: int | None = None):
        self.sqs, self.calls = sqs, 0
        self.kill_before_call, self.kill_after_call = kill_before_call, kill_after_call

    def send_message_batch(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.kill_before_call:
            raise _KilledError
        answer = self.sqs.send_message_batch(**kwargs)
        if self.calls == self.kill_after_call:
            raise _KilledError
        return answer


def _twenty_five_batches(pipeline: Pipeline) -> list[str]:
    return [post(pipeline, good(2, tag=str(n)))["batchId"] for n in range(25)]


@pytest.mark.parametrize("where", ["before the 2nd call", "after the 2nd call, before its entry"])
def test_a_killed_run_resumes_under_its_replay_id_and_sends_no_journaled_batch_again(
    pipeline: Pipeline, tmp_path: Path, where: str
) -> None:
    batch_ids = _twenty_five_batches(pipeline)
    sources = sources_of(pipeline)
    selection = Selection(since="1h")
    assert open_journal(tmp_path, "local", selection, resume=False, restart=False) is None
    plan = plan_replay(sources, selection)
    assert plan.requests == 25
    journal = ReplayJournal.start(tmp_path, selection.key("local"), plan)
    killing = _Sqs(
        pipeline.sqs, **({"kill_before_call": 2} if where.startswith("before") else {"kill_after_call": 2})
    )
    with pytest.raises(_KilledError):
        send_replay(Sources(**{**sources.__dict__, "sqs": killing}), journal, rate=0)
    first_run = replay_messages(pipeline)
    sent_in_first_call = [c.batch_id for c in first_run[:10]]

    # the next run of the same selection names the journal instead of starting another replay
    with pytest.raises(JournalError, match="--resume") as refused:
        open_journal(tmp_path, "local", selection, resume=False, restart=False)
    assert str(journal.path) in refused.value.message and journal.replay_id in refused.value.message

    resumed = open_journal(tmp_path, "local", selection, resume=True, restart=False)
    assert resumed is not None and resumed.replay_id == journal.replay_id and resumed.resumed
    assert resumed.sent == set(sent_in_first_call)
    report = send_replay(sources, resumed, rate=0)
    second_run = replay_messages(pipeline)
    assert report.already_sent == 10 and report.requests == 15
    assert {c.replay.replay_id for c in first_run + second_run if c.replay} == {journal.replay_id}
    assert not set(sent_in_first_call) & {c.batch_id for c in second_run}  # journaled: never sent again
    assert sorted(c.batch_id for c in second_run) == sorted(batch_ids[10:])
    if where.startswith("after"):  # SQS took the 2nd call but the kill came before its `sent` entry
        assert sorted(c.batch_id for c in first_run[10:]) == sorted(batch_ids[10:20])
    else:
        assert len(first_run) == 10
    # finished: the same command line starts a new replay (a new id), no --resume asked
    assert open_journal(tmp_path, "local", selection, resume=False, restart=False) is None
    with pytest.raises(JournalError, match="no unfinished replay"):
        open_journal(tmp_path, "local", selection, resume=True, restart=False)


def test_restart_forgets_the_unfinished_run_and_a_torn_last_line_is_dropped(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    _twenty_five_batches(pipeline)
    sources, selection = sources_of(pipeline), Selection(since="1h")
    journal = ReplayJournal.start(tmp_path, selection.key("local"), plan_replay(sources, selection))
    with pytest.raises(_KilledError):
        send_replay(
            Sources(**{**sources.__dict__, "sqs": _Sqs(pipeline.sqs, kill_before_call=3)}), journal, rate=0
        )
    with journal.path.open("a") as handle:
        handle.write('{"kind":"sent","batc')  # killed in the middle of a write
    resumed = open_journal(tmp_path, "local", selection, resume=True, restart=False)
    assert resumed is not None and len(resumed.sent) == 20
    assert journal.path.read_text().endswith("\n")
    assert open_journal(tmp_path, "local", selection, resume=False, restart=True) is None
    fresh = ReplayJournal.start(tmp_path, selection.key("local"), plan_replay(sources, selection))
    assert fresh.replay_id != journal.replay_id


def test_a_run_that_sends_nothing_leaves_no_journal(pipeline: Pipeline, tmp_path: Path) -> None:
    sources, selection = sources_of(pipeline), Selection(since="1h")
    plan = plan_replay(sources, selection)
    assert plan.requests == 0
    send_replay(sources, ReplayJournal.start(tmp_path, selection.key("local"), plan), rate=0)
    assert list(tmp_path.iterdir()) == []


def test_the_journal_is_written_before_each_send(pipeline: Pipeline, tmp_path: Path) -> None:
    _twenty_five_batches(pipeline)
    sources, selection = sources_of(pipeline), Selection(since="1h")
    journal = ReplayJournal.start(tmp_path, selection.key("local"), plan_replay(sources, selection))
    seen: list[list[str]] = []

    class Watching(_Sqs):
        def send_message_batch(self, **kwargs: Any) -> Any:
            entries = [json.loads(line) for line in journal.path.read_text().splitlines()]
            seen.append([e["kind"] for e in entries])
            return super().send_message_batch(**kwargs)

    send_replay(Sources(**{**sources.__dict__, "sqs": Watching(pipeline.sqs)}), journal, rate=0)
    assert seen[0] == ["run", "sending"] and seen[1] == ["run", "sending", "sent", "sending"]
    kinds = [json.loads(line)["kind"] for line in journal.path.read_text().splitlines()]
    assert kinds[-1] == "done" and kinds.count("sent") == 3


# --- waiting ----------------------------------------------------------------------------------------------
def _settle(pipeline: Pipeline, batch_id: str, entries: list[str]) -> None:
    """What the processor does when a replay settles a chunk: `<replayId>:<chunk>` into the batch's `rc`."""
    pipeline.dynamodb.update_item(
        TableName=pipeline.table_name,
        Key={"pk": {"S": f"BATCH#{batch_id}"}},
        UpdateExpression="ADD rc :c",
        ExpressionAttributeValues={":c": {"SS": entries}},
    )


def test_wait_ends_when_every_chunk_of_every_batch_is_settled_for_this_replay(pipeline: Pipeline) -> None:
    small, large = post(pipeline, good(1)), post(pipeline, good(250))  # 1 chunk, 3 chunks
    pipeline.drain()
    sources = sources_of(pipeline)
    plan = plan_replay(sources, Selection(since="1h"))
    clock = FakeClock()
    pending: list[tuple[int, int]] = []

    class Seen:
        def selected(self, requests: int, records: int) -> None: ...

        def sent(self, requests: int, records: int) -> None: ...

        def pending(self, batches: int, chunks: int) -> None:
            pending.append((batches, chunks))
            if len(pending) == 1:  # the processor gets going: another replay's chunks do not count
                _settle(pipeline, small["batchId"], ["R1:0"])
                _settle(pipeline, large["batchId"], ["OTHER:0", "OTHER:1", "OTHER:2", "R1:0"])
            elif len(pending) == 2:
                _settle(pipeline, small["batchId"], ["R1:0"])
                _settle(pipeline, large["batchId"], ["R1:1", "R1:2"])

    report = wait_for_replay(sources, plan, "R1", 60, Seen(), clock, clock.sleep, poll=1)
    assert pending == [(2, 4), (1, 2), (0, 0)]
    assert report.complete and report.pending_batches == [] and report.elapsed == 2
    assert report.before == report.after == {"processed": 251, "rejected": 0, "duplicates": 0}

    timed_out = wait_for_replay(sources, plan, "R2", 5, None, clock, clock.sleep, poll=1)
    assert not timed_out.complete and sorted(timed_out.pending_batches) == sorted(
        [small["batchId"], large["batchId"]]
    )
    assert timed_out.elapsed == 5


def test_chunks_left_counts_only_this_replays_chunks() -> None:
    item = {"accepted": 201, "rc": ["A:0", "A:2", "B:1"]}
    assert chunks_left(item, "A") == 1 and chunks_left(item, "B") == 2 and chunks_left(item, "C") == 3
    assert chunks_left({"accepted": 0}, "A") == 0


def test_the_plan_survives_the_journal(pipeline: Pipeline, tmp_path: Path) -> None:
    post(pipeline, [*good(2), {"type": "reading", "data": {}}])
    pipeline.drain()
    sources = sources_of(pipeline)
    selection = Selection(since="1h", status="REJECTED", reason="empty")
    plan = plan_replay(sources, selection)
    journal = ReplayJournal.start(tmp_path, selection.key("local"), plan)
    journal.will_send([plan.candidates[0].batch_id])  # writes the run entry
    loaded = ReplayJournal.find(tmp_path, selection.key("local"))
    assert loaded is not None and isinstance(loaded.plan, Plan)
    assert loaded.plan.summary() == plan.summary()
    assert [c.__dict__ for c in loaded.plan.candidates] == [
        {**c.__dict__, "matching": None} for c in plan.candidates
    ]


# --- through the processor ---------------------------------------------------------------------------------
def _use(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, transform: Any, version: str) -> None:
    """The processor's transform and version, as a deploy of a new transform.py sets them."""
    module = pipeline.module("processor")
    monkeypatch.setattr(module.transform, "transform", transform)
    monkeypatch.setattr(module, "TRANSFORM_VERSION", version)


def _buggy(record: dict[str, Any], context: Any) -> dict[str, Any]:
    from rtp_pipeline.contract import RejectRecord

    if record["data"].get("unit") == "F":
        raise RejectRecord("unit F is not supported")
    return {"unit": record["data"].get("unit"), "fixed": False}


def _fixed(record: dict[str, Any], context: Any) -> dict[str, Any]:
    if not record["data"].get("unit"):
        from rtp_pipeline.contract import RejectRecord

        raise RejectRecord("no unit")
    return {"unit": record["data"]["unit"], "fixed": True}


def test_a_replay_sent_by_the_service_is_processed_once_and_wait_sees_the_deltas(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _use(pipeline, monkeypatch, _buggy, "v1")
    mixed = [{"type": "t", "data": {"unit": "F" if n % 4 == 0 else "C", "n": n}} for n in range(150)]
    # no unit: PROCESSED by the buggy code, REJECTED by the fixed one, but not selected: left as it is
    other = [{"type": "t", "data": {"n": 1}}, {"type": "t", "data": {"unit": "C"}}]
    first, second, clean = post(pipeline, mixed), post(pipeline, other), post(pipeline, good(3))
    pipeline.drain()
    _use(pipeline, monkeypatch, _fixed, "v2")
    before = _record_items(pipeline)
    sources = sources_of(pipeline)
    selection = Selection(since="1h", status="REJECTED", reason="unit F")
    plan = plan_replay(sources, selection)
    assert [c.batch_id for c in plan.candidates] == [first["batchId"]] and plan.listed_records == 38
    journal = ReplayJournal.start(tmp_path, selection.key("local"), plan)
    send_replay(sources, journal, rate=0)
    send_replay(sources, ReplayJournal.start(tmp_path, "again", plan, journal.replay_id), rate=0)  # resent
    deliveries = pipeline.drain(replay=True)
    assert deliveries and all(not d.failures for d in deliveries)
    report = wait_for_replay(sources, plan, journal.replay_id, 5)
    assert report.complete and report.delta == {"processed": 38, "rejected": -38, "duplicates": 0}

    table = PipelineTable(pipeline.dynamodb, pipeline.table_name)
    replayed = [f"{first['batchId']}-{n}" for n in range(0, 150, 4)]
    for record_id in replayed:
        view = table.get_record(record_id)
        assert view is not None and view["status"] == "PROCESSED" and view["result"]["fixed"] is True
        assert (view["transformVersion"], view["replayId"], view["previousStatus"]) == (
            "v2",
            journal.replay_id,
            "REJECTED",
        )
    after = _record_items(pipeline)
    changed = {record_id for record_id, item in after.items() if item != before[record_id]}
    assert changed == set(replayed)  # nothing else touched: the other batch's REJECTED record, the clean ones
    view = pipeline.get_batch(second["batchId"]).body
    assert (view["processed"], view["rejected"]) == (2, 0)
    assert pipeline.get_batch(clean["batchId"]).body["processed"] == 3


def _record_items(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    items = pipeline.dynamodb.scan(TableName=pipeline.table_name, ConsistentRead=True)["Items"]
    return {
        item["pk"]["S"].removeprefix("REC#"): item for item in items if item["pk"]["S"].startswith("REC#")
    }


# --- the command, in process -----------------------------------------------------------------------------
def test_the_command_renders_the_plan_sends_and_exits_1_when_wait_times_out(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The command over this moto account (its target and sources swapped in): the dry run's figures, the
    human summary, and --wait's time-out (nothing polls the replay queue here) as exit 1."""
    from typer.testing import CliRunner

    import rtp_cli.app as cli
    import rtp_cli.replay as replay_module
    import rtp_cli.target as target_module

    first, second = post(pipeline, good(3)), post(pipeline, good(150))
    pipeline.drain()
    monkeypatch.setenv("RTP_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(target_module, "resolve_target", lambda env, profile=None: object())
    monkeypatch.setattr(replay_module, "sources_for", lambda target: sources_of(pipeline))
    clock = FakeClock()  # --wait polls on it: the time-out without a real second of sleep
    waiting = functools.partial(replay_module.wait_for_replay, clock=clock, sleep=clock.sleep)
    monkeypatch.setattr(replay_module, "wait_for_replay", waiting)
    runner = CliRunner()

    dry = runner.invoke(cli.app, ["replay", "--since", "1h", "--dry-run"])
    text = " ".join(dry.output.split())
    assert dry.exit_code == 0, dry.output
    size = object_size(pipeline, _raw_key(pipeline, first["batchId"])) + object_size(
        pipeline, _raw_key(pipeline, second["batchId"])
    )
    assert f"would replay 2 request(s), 153 record(s), {replay_module._size(size)} of raw requests" in text
    assert replay_messages(pipeline) == [] and not (tmp_path / "replay-journals").exists()

    run = runner.invoke(cli.app, ["replay", "--since", "1h", "--wait", "--timeout", "1", "--rate", "0"])
    text = " ".join(run.output.split())
    assert run.exit_code == 1, run.output
    assert "sent 2 request(s), 153 record(s)" in text and "2 batch(es) pending" in text
    assert clock.now >= 1  # the second --timeout allows passed on the fake clock
    assert sorted(c.batch_id for c in replay_messages(pipeline)) == sorted(
        [first["batchId"], second["batchId"]]
    )

    done = runner.invoke(cli.app, ["replay", "--batch", first["batchId"], "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["sent"]["requests"] == 1 and report["plan"]["records"] == 3 and "wait" not in report


def _raw_key(pipeline: Pipeline, batch_id: str) -> str:
    item = pipeline.item(f"BATCH#{batch_id}")
    assert item is not None
    return str(item["rawKey"])


def test_batch_ids_with_a_window_the_receive_time_or_with_rejected_the_processed_time(
    pipeline: Pipeline,
) -> None:
    early = post(pipeline, good(1))
    time.sleep(0.01)
    late = post(pipeline, good(1))
    sources, both = sources_of(pipeline), (early["batchId"], late["batchId"])
    at = batch_time(late["batchId"]).isoformat().replace("+00:00", "Z")
    received = plan_replay(sources, Selection(since=at, batch_ids=both))
    assert [c.batch_id for c in received.candidates] == [late["batchId"]]
    assert received.skipped == {"received outside the window": 1} and received.processed_from is None
    rejected = plan_replay(sources, Selection(since=at, batch_ids=both, status="REJECTED"))
    assert [c.batch_id for c in rejected.candidates] == list(
        both
    ) and rejected.processed_from == rejected.since
