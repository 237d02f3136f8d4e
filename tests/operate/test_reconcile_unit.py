"""`rtp reconcile`'s service in process: the real ingest and processor handlers on moto, built from the
`local` template (`rtp_cli.local.inprocess`), reconciled through their own table, bucket and queues. Each
gap is made the way it happens (a record item deleted behind the pipeline's back, a claim check that went to
the DLQ, a message lost, a counter off by one); the calls of a known window are counted against the cost
arithmetic of the module docstring; the pure classification is checked over generated batch states."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rtp_pipeline import storage
from rtp_pipeline.ingest import new_batch_id

from rtp_cli import reconcile as service
from rtp_cli.local.inprocess import Pipeline
from rtp_cli.reconcile import (
    BatchState,
    Found,
    ReconcileError,
    Sources,
    Window,
    classify,
    estimate_cost,
    parse_window,
    reconcile,
    ulid_millis,
    ulid_prefix,
)
from tests.tiers import examples


def sources_of(pipeline: Pipeline) -> Sources:
    """Clients of their own (the call counter must see only the reconciliation's calls)."""
    session = pipeline.session
    return Sources(
        dynamodb=session.client("dynamodb"),
        table=pipeline.table_name,
        s3=session.client("s3"),
        bucket=pipeline.bucket,
        sqs=session.client("sqs"),
        work_queue_url=pipeline.queue_url,
        dlq_url=pipeline.dlq_url,
    )


def records(count: int, prefix: str | None = None) -> list[dict[str, Any]]:
    return [
        {"type": "reading", "data": {"n": index}, **({"id": f"{prefix}-{index}"} if prefix else {})}
        for index in range(count)
    ]


def post(pipeline: Pipeline, batch: list[dict[str, Any]]) -> dict[str, Any]:
    answer = pipeline.post_records({"records": batch})
    assert answer.status == 202, answer.body
    body: dict[str, Any] = answer.body
    return body


def window_now(since: datetime) -> Window:
    return Window(since, datetime.now(UTC) + timedelta(seconds=1))


def start() -> datetime:
    moment = datetime.now(UTC) - timedelta(milliseconds=5)
    time.sleep(0.01)
    return moment


# --- end to end in process -------------------------------------------------------------------------


def test_a_clean_run_is_green_and_counts_every_hop(pipeline: Pipeline) -> None:
    since = start()
    post(pipeline, records(3))
    post(pipeline, [*records(2, "client"), {"type": "t", "data": {}}])  # the empty one is REJECTED
    post(pipeline, records(1, "client"))  # client-0 again: a duplicate
    refused = pipeline.post_records({"records": [{"data": {}}]})  # no type: 400, raw object only
    assert refused.status == 400
    pipeline.drain()
    seen: list[tuple[int, int]] = []

    report = reconcile(sources_of(pipeline), window_now(since), progress=lambda *done: seen.append(done))

    assert report["ok"] is True, report
    assert seen[-1] == (4, 7)  # raw objects, records accepted
    counts = report["counts"]
    assert (counts["rawObjects"], counts["notAccepted"], counts["requestsAccepted"]) == (4, 1, 3)
    assert counts["recordsAccepted"] == 7
    assert counts["stored"] == {"processed": 5, "rejected": 1, "duplicates": 1, "total": 7}
    assert counts["verified"] == {"processed": 5, "rejected": 1, "duplicates": 1, "missing": 0}
    assert counts["complete"] == {"batches": 3}
    for state in ("pending", "deadLettered", "stuck"):
        assert counts[state] == {"batches": 0, "records": 0}
    assert report["gaps"] == {"batches": 0, "records": 0} and report["missing"] == []
    assert json.loads(json.dumps(report)) == report  # --json prints exactly this
    assert set(report) == {
        "ok", "window", "countsOnly", "counts", "queues", "gaps", "gapBatches", "gapBatchesMore", "missing",
        "missingMore", "maxIds", "notAcceptedKeys", "unrecognizedKeys", "cost",
    }  # fmt: skip
    assert set(counts) == {
        "rawObjects", "notAccepted", "requestsAccepted", "recordsAccepted", "stored", "verified", "complete",
        "pending", "deadLettered", "stuck", "mismatchedBatches",
    }  # fmt: skip
    assert set(report["queues"]) == {"work", "deadLetter"}
    assert set(report["cost"]) == {"calls", "readUnitsReported", "readUnitsMinimum", "seconds"}
    [refused_key] = report["notAcceptedKeys"]
    assert refused_key.startswith("raw/") and refused_key in pipeline.raw_keys()


def test_an_idempotent_retry_leaves_a_raw_object_that_is_not_a_second_batch(pipeline: Pipeline) -> None:
    since = start()
    headers = {"Content-Type": "application/json", "Idempotency-Key": "reconcile-retry-1"}
    first = pipeline.post_records({"records": records(3)}, headers=headers)
    retry = pipeline.post_records({"records": records(3)}, headers=headers)
    assert first.status == retry.status == 202 and retry.headers.get("idempotent-replayed") == "true"
    pipeline.drain()

    report = reconcile(sources_of(pipeline), window_now(since))

    assert report["ok"] is True
    counts = report["counts"]
    assert (counts["rawObjects"], counts["notAccepted"], counts["requestsAccepted"]) == (2, 1, 1)
    assert counts["recordsAccepted"] == counts["verified"]["processed"] == 3


def test_a_record_deleted_behind_its_back_is_a_gap_with_its_id(pipeline: Pipeline) -> None:
    since = start()
    kept = post(pipeline, records(150))
    other = post(pipeline, records(2, "named"))
    pipeline.drain()
    lost = [f"{kept['batchId']}-120", "named-1"]
    for record_id in lost:
        pipeline.dynamodb.delete_item(TableName=pipeline.table_name, Key={"pk": {"S": f"REC#{record_id}"}})

    report = reconcile(sources_of(pipeline), window_now(since), max_ids=1)

    assert report["ok"] is False
    assert report["gaps"] == {"batches": 2, "records": 2}
    assert report["counts"]["verified"]["missing"] == 2
    [shown] = report["missing"]  # --max-ids 1: one shown, one more said
    assert report["missingMore"] == 1 and report["gapBatchesMore"] == 1
    owner = {lost[0]: kept["batchId"], lost[1]: other["batchId"]}
    assert shown["recordId"] in lost and shown["batchId"] == owner[shown["recordId"]]
    assert "missing from the table" in shown["why"]

    everything = reconcile(sources_of(pipeline), window_now(since))
    assert {(m["recordId"], m["batchId"]) for m in everything["missing"]} == set(owner.items())
    lines = " ".join(service.render_lines(everything, "local"))
    assert all(record_id in lines for record_id in lost) and "gaps: 2 record(s) in 2 batch(es)" in lines


def test_counts_only_reads_no_record_item_and_sees_no_deleted_record(pipeline: Pipeline) -> None:
    since = start()
    batch = post(pipeline, records(5))
    pipeline.drain()
    pipeline.dynamodb.delete_item(
        TableName=pipeline.table_name, Key={"pk": {"S": f"REC#{batch['batchId']}-0"}}
    )
    sources = sources_of(pipeline)
    report = reconcile(sources, window_now(since), counts_only=True)
    # The counters are intact: the trade-off --counts-only makes (O(batches), blind to single items).
    assert report["ok"] is True and report["counts"]["verified"] is None
    assert report["counts"]["stored"]["processed"] == 5
    assert report["cost"]["calls"]["dynamodb.BatchGetItem"] == 1  # the batch items only
    assert reconcile(sources_of(pipeline), window_now(since))["ok"] is False


def test_a_batch_of_one_assigned_id_is_counted_by_its_record_item(pipeline: Pipeline) -> None:
    """`byRecord` batches keep no counters (rtp_pipeline.storage.counted_by_record): reconcile counts them
    from their one record item, also with --counts-only (one more key per such batch), so a record deleted
    behind its back leaves its batch stuck, a gap, in both modes."""
    since = start()
    singles = [post(pipeline, records(1)) for _ in range(3)]
    pipeline.drain()
    sources = sources_of(pipeline)
    for counts_only in (False, True):
        report = reconcile(sources, window_now(since), counts_only=counts_only)
        assert report["ok"] is True, report
        assert report["counts"]["stored"] == {"processed": 3, "rejected": 0, "duplicates": 0, "total": 3}
        assert report["counts"]["complete"] == {"batches": 3}
    lost = singles[1]["ids"][0]
    pipeline.dynamodb.delete_item(TableName=pipeline.table_name, Key={"pk": {"S": f"REC#{lost}"}})
    for counts_only in (False, True):
        report = reconcile(sources_of(pipeline), window_now(since), counts_only=counts_only)
        assert report["ok"] is False and report["gaps"]["batches"] == 1
        assert report["counts"]["stuck"]["batches"] == 1
        assert report["gapBatches"][0]["batchId"] == singles[1]["batchId"]


def test_pending_while_queued_and_stuck_once_the_message_is_gone(pipeline: Pipeline) -> None:
    since = start()
    batch = post(pipeline, records(3))
    pending = reconcile(sources_of(pipeline), window_now(since))
    assert pending["ok"] is True
    assert pending["counts"]["pending"] == {"batches": 1, "records": 3}
    assert pending["queues"]["work"]["visible"] == 1

    [message] = pipeline.sqs.receive_message(QueueUrl=pipeline.queue_url).get("Messages", [])
    pipeline.sqs.delete_message(QueueUrl=pipeline.queue_url, ReceiptHandle=message["ReceiptHandle"])
    stuck = reconcile(sources_of(pipeline), window_now(since))
    assert stuck["ok"] is False
    assert stuck["counts"]["stuck"] == {"batches": 1, "records": 3}
    assert {m["recordId"] for m in stuck["missing"]} == {f"{batch['batchId']}-{i}" for i in range(3)}
    assert stuck["gapBatches"][0]["state"] == "stuck"


def test_messages_on_a_replay_queue_keep_an_uncounted_batch_pending(pipeline: Pipeline) -> None:
    """A stack with `ReplayQueueUrl` (the replay queue of issue 12): its messages count as queued work."""
    since = start()
    batch = post(pipeline, records(2))
    [message] = pipeline.sqs.receive_message(QueueUrl=pipeline.queue_url).get("Messages", [])
    pipeline.sqs.delete_message(QueueUrl=pipeline.queue_url, ReceiptHandle=message["ReceiptHandle"])
    replay = pipeline.sqs.create_queue(QueueName="replay")["QueueUrl"]
    pipeline.sqs.send_message(QueueUrl=replay, MessageBody=message["Body"])
    sources = sources_of(pipeline)
    sources.replay_queue_url = replay

    report = reconcile(sources, window_now(since))

    assert report["ok"] is True and report["counts"]["pending"] == {"batches": 1, "records": 2}
    assert report["queues"]["replay"] == {"visible": 1, "inFlight": 0, "delayed": 0}
    assert report["cost"]["calls"]["sqs.GetQueueAttributes"] == 3
    pipeline.sqs.purge_queue(QueueUrl=replay)
    stuck = reconcile(sources_of(pipeline), window_now(since))  # without the replay queue: stuck
    assert stuck["ok"] is False and stuck["gapBatches"][0]["batchId"] == batch["batchId"]


def test_sources_come_from_the_stack_outputs(pipeline: Pipeline) -> None:
    outputs = {
        "TableName": pipeline.table_name,
        "RawBucketName": pipeline.bucket,
        "WorkQueueUrl": pipeline.queue_url,
        "DeadLetterQueueUrl": pipeline.dlq_url,
    }

    class Target:
        def __init__(self, outputs: dict[str, str]) -> None:
            self.outputs = outputs

        def client(self, service: str) -> Any:
            return pipeline.session.client(service)  # type: ignore[call-overload]

        def output(self, key: str) -> str:
            return self.outputs[key]

    sources = service.sources_for(Target(outputs))
    assert (sources.table, sources.bucket, sources.dlq_url) == (
        pipeline.table_name,
        pipeline.bucket,
        pipeline.dlq_url,
    )
    assert sources.replay_queue_url is None
    assert service.sources_for(Target({**outputs, "ReplayQueueUrl": "u"})).replay_queue_url == "u"


def test_a_dead_lettered_batch_is_a_gap_and_stays_in_the_dlq(pipeline: Pipeline) -> None:
    since = start()
    post(pipeline, records(2))
    pipeline.drain()
    poisoned = post(pipeline, records(4))
    # What the redrive policy does after maxReceiveCount: the claim check moves to the DLQ.
    [message] = pipeline.sqs.receive_message(QueueUrl=pipeline.queue_url).get("Messages", [])
    pipeline.sqs.send_message(QueueUrl=pipeline.dlq_url, MessageBody=message["Body"])
    pipeline.sqs.delete_message(QueueUrl=pipeline.queue_url, ReceiptHandle=message["ReceiptHandle"])

    report = reconcile(sources_of(pipeline), window_now(since))

    assert report["ok"] is False
    assert report["counts"]["deadLettered"] == {"batches": 1, "records": 4}
    assert report["counts"]["complete"] == {"batches": 1}
    assert [b["batchId"] for b in report["gapBatches"]] == [poisoned["batchId"]]
    assert all("dead-lettered" in m["why"] for m in report["missing"]) and len(report["missing"]) == 4
    assert report["queues"]["deadLetter"]["visible"] == 1 and report["queues"]["deadLetter"]["sampled"] == 1
    assert pipeline.queued(pipeline.dlq_url) == 1  # peeked, not consumed


def test_a_dlq_peeked_in_part_is_said(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "DLQ_SAMPLE_MAX", 1)
    for number in range(2):
        pipeline.sqs.send_message(
            QueueUrl=pipeline.dlq_url, MessageBody=json.dumps({"batchId": f"b{number}"})
        )
    since = start()
    post(pipeline, records(1))
    pipeline.drain()
    healthy = reconcile(sources_of(pipeline), window_now(since))
    # Every batch complete: the DLQ's depth is read, its old messages are not received.
    assert "sqs.ReceiveMessage" not in healthy["cost"]["calls"]
    assert healthy["queues"]["deadLetter"] == {
        "checked": True, "visible": 2, "inFlight": 0, "delayed": 0, "peeked": False, "sampled": 0
    }  # fmt: skip
    assert "the DLQ holds" not in " ".join(service.render_lines(healthy, "local"))

    post(pipeline, records(1))  # queued, not processed: the DLQ is peeked for it
    report = reconcile(sources_of(pipeline), window_now(since))
    assert report["queues"]["deadLetter"]["visible"] == 2 and report["queues"]["deadLetter"]["sampled"] == 1
    text = " ".join(" ".join(service.render_lines(report, "local")).split())
    assert "the DLQ holds 2 messages and 1 were peeked" in text


def test_counters_that_disagree_with_the_items_are_a_gap(pipeline: Pipeline) -> None:
    since = start()
    batch = post(pipeline, records(3))
    pipeline.drain()
    pipeline.dynamodb.update_item(
        TableName=pipeline.table_name,
        Key={"pk": {"S": f"BATCH#{batch['batchId']}"}},
        UpdateExpression="ADD #r :one, #p :minus",  # `processed` is a reserved word
        ExpressionAttributeNames={"#r": "rejected", "#p": "processed"},
        ExpressionAttributeValues={":one": {"N": "1"}, ":minus": {"N": "-1"}},
    )
    report = reconcile(sources_of(pipeline), window_now(since))
    assert report["ok"] is False and report["missing"] == []
    assert "processed 2 counted, 3 found" in report["gapBatches"][0]["problem"]


def test_the_window_selects_by_arrival_to_the_millisecond(pipeline: Pipeline) -> None:
    before = post(pipeline, records(1))
    time.sleep(0.005)
    inside = post(pipeline, records(2))
    time.sleep(0.005)
    after = post(pipeline, records(4))
    pipeline.drain()
    since = datetime.fromtimestamp(ulid_millis(inside["batchId"]) / 1000, UTC)
    until = datetime.fromtimestamp(ulid_millis(after["batchId"]) / 1000, UTC)
    assert ulid_millis(before["batchId"]) < ulid_millis(inside["batchId"])

    report = reconcile(sources_of(pipeline), Window(since, until))
    assert report["counts"]["requestsAccepted"] == 1 and report["counts"]["recordsAccepted"] == 2


def test_calls_per_record_follow_the_cost_arithmetic(pipeline: Pipeline) -> None:
    """The guard of the README's cost table: list calls per 1,000 requests plus one per hour, one
    BatchGetItem per 100 batch items and per 100 record items (packed across batches), three queue reads."""
    since = start()
    sizes = [250, 250, 130, 7]
    for size in sizes:
        post(pipeline, records(size))
    pipeline.drain()
    window = window_now(since)

    full = reconcile(sources_of(pipeline), window)
    counts_only = reconcile(sources_of(pipeline), window, counts_only=True)

    assert full["ok"] and counts_only["ok"]
    hours = len(window.hours())
    expected = {
        "s3.ListObjectsV2": hours,  # 4 keys: one page per hour
        "dynamodb.BatchGetItem": math.ceil(len(sizes) / 100) + math.ceil(sum(sizes) / 100),
        "sqs.GetQueueAttributes": 2,  # work queue and DLQ (this stack has no replay queue)
    }
    assert full["cost"]["calls"] == expected
    assert counts_only["cost"]["calls"] == {**expected, "dynamodb.BatchGetItem": 1}
    model = estimate_cost(sum(sizes), records_per_request=160, hours=hours)
    assert full["cost"]["calls"]["dynamodb.BatchGetItem"] <= model["dynamodbBatchGetCalls"]
    assert full["cost"]["calls"]["s3.ListObjectsV2"] <= model["s3ListCalls"]


def test_listing_pages_and_hour_prefixes(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three hours of raw objects, 10 keys a page: the first hour starts at the window, the last ends."""
    monkeypatch.setattr(service, "LIST_KEYS", 10)
    base = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    arrivals = [base + timedelta(minutes=5 * index) for index in range(36)]  # 09:00 .. 11:55
    for moment in arrivals:
        batch_id = new_batch_id(int(moment.timestamp() * 1000))
        key = f"raw/{moment:%Y/%m/%d/%H}/{batch_id}.json"
        pipeline.s3.put_object(Bucket=pipeline.bucket, Key=key, Body=b"{}")
    pipeline.s3.put_object(Bucket=pipeline.bucket, Key="raw/2026/11/28/10/notes.txt", Body=b"")
    window = Window(base + timedelta(minutes=30), base + timedelta(hours=2, minutes=30))
    sources = sources_of(pipeline)

    report = reconcile(sources, window, counts_only=True)

    inside = [moment for moment in arrivals if window.since <= moment < window.until]
    assert report["counts"]["rawObjects"] == len(inside) == report["counts"]["notAccepted"]
    assert report["unrecognizedKeys"] == 1 and report["ok"] is True
    # 09:xx from 09:30 (6 keys: 1 page), 10:xx (12 keys and notes.txt: 2 pages), 11:xx until 11:30
    # (1 page: the 7th key is past the end, so no further page is asked for)
    assert report["cost"]["calls"]["s3.ListObjectsV2"] == 4


def test_a_record_an_eventually_consistent_read_missed_is_read_again_strongly(pipeline: Pipeline) -> None:
    """The first read of a record item may miss a write of the last second: before calling it missing,
    the record is read again strongly consistent (only that key), and then found."""
    since = start()
    batch = post(pipeline, records(3))
    pipeline.drain()
    late = f"REC#{batch['batchId']}-1"
    real = pipeline.session.client("dynamodb")

    class StaleReads:
        """The table as an eventually consistent read can see it: without the newest item."""

        meta = real.meta

        def batch_get_item(self, RequestItems: dict[str, Any], **kwargs: Any) -> Any:  # noqa: N803
            [(table, request)] = RequestItems.items()
            if not request.get("ConsistentRead"):
                request = {**request, "Keys": [k for k in request["Keys"] if k["pk"]["S"] != late]}
            return real.batch_get_item(RequestItems={table: request}, **kwargs)

    sources = sources_of(pipeline)
    sources.dynamodb = StaleReads()
    sources.counter.watch(real)
    report = reconcile(sources, window_now(since))

    assert report["ok"] is True, report["gapBatches"]
    assert report["counts"]["verified"] == {"processed": 3, "rejected": 0, "duplicates": 0, "missing": 0}
    # The batch item and 3 record items eventually consistent, then the batch item and 1 record strongly.
    assert report["cost"]["readUnitsMinimum"] == 0.5 + 3 * 0.5 + 1 + 1
    assert report["cost"]["calls"]["dynamodb.BatchGetItem"] == 4


def test_unprocessed_keys_are_asked_again_then_refused(pipeline: Pipeline) -> None:
    sources = sources_of(pipeline)
    calls: list[int] = []

    class Throttled:
        def batch_get_item(self, RequestItems: dict[str, Any], **_: Any) -> dict[str, Any]:  # noqa: N803
            calls.append(1)
            return {"Responses": {}, "UnprocessedKeys": RequestItems}

    sources.dynamodb = Throttled()
    with pytest.raises(ReconcileError, match="left 2 key"):
        service.batch_get(sources, ["REC#a", "REC#b"], None, sleep=lambda _: None)
    assert len(calls) == service.UNPROCESSED_ATTEMPTS


def test_the_constants_are_storage_s() -> None:
    assert service.CHUNK_RECORDS == storage.CHUNK_RECORDS
    assert service.BATCH_GET_KEYS == storage.BATCH_GET_KEYS == 100


# --- the window --------------------------------------------------------------------------------------


def test_parse_window_reads_what_rtp_records_reads() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert parse_window("1h", None, now) == Window(now - timedelta(hours=1), now)
    assert parse_window("2026-11-28T10:00:00Z", "30m", now).until == now - timedelta(minutes=30)
    for since, until, words in [
        ("yesterday", None, "neither an RFC 3339 time"),
        ("1h", "2h", "must be before"),
        ("2026-02-30T00:00:00Z", None, "neither"),
        ("401d", None, "400 days"),
    ]:
        with pytest.raises(ReconcileError, match=words):
            parse_window(since, until, now)


@settings(max_examples=examples(200), deadline=None)
@given(
    st.integers(min_value=0, max_value=2**48 - 1),
    st.integers(min_value=0, max_value=2**48 - 1),
)
def test_batch_ids_sort_by_arrival_against_the_start_after_prefix(arrived: int, since: int) -> None:
    batch_id = new_batch_id(arrived)
    assert ulid_millis(batch_id) == arrived
    assert ulid_prefix(arrived) == batch_id[:10]
    # StartAfter=<hour prefix><ulid_prefix(since)> lists exactly the batch ids that arrived at since or later.
    assert (batch_id > ulid_prefix(since)) == (arrived >= since)


@settings(max_examples=examples(200), deadline=None)
@given(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
    st.integers(min_value=1, max_value=72 * 3600 * 1000),
    st.integers(min_value=0, max_value=10**9),
)
def test_window_hours_cover_every_moment_and_no_more(since: datetime, length_ms: int, probe: int) -> None:
    since = since.replace(microsecond=since.microsecond // 1000 * 1000)
    window = Window(since, since + timedelta(milliseconds=length_ms))
    hours = window.hours()
    moment = since + timedelta(milliseconds=probe % length_ms)
    assert moment.replace(minute=0, second=0, microsecond=0) in hours
    assert hours[0] <= window.since and hours[-1] < window.until
    assert len(hours) == len(set(hours)) and hours == sorted(hours)


# --- the pure classification, over generated batch states ---------------------------------------------

OWN_P, OWN_R, DUPLICATE, ABSENT, LOST = "P", "R", "D", "-", "lost"
OTHER_BATCH = "01JD8X3Y5Z6A7B8C9D0E1F2G3Z"


@st.composite
def batch_states(draw: st.DrawFn) -> dict[str, Any]:
    """A batch as the pipeline can leave it. Some chunks counted: each of their records was stored by this
    batch (P/R) or owned by another (a duplicate) when `count_chunk` counted it, and the counters hold
    those counts (sometimes off by one); a counted record may have been deleted since (LOST). Records of
    uncounted chunks are stored or not written yet (ABSENT). Queued or not, in the DLQ or not."""
    accepted = draw(st.integers(min_value=0, max_value=320))
    chunks = math.ceil(accepted / 100)
    counted = draw(st.frozensets(st.integers(min_value=0, max_value=chunks - 1))) if chunks else frozenset()
    stored = st.sampled_from([OWN_P, OWN_R, DUPLICATE])
    truth: list[tuple[str, bool]] = []  # (state when counted or now, lost since)
    for index in range(accepted):
        if index // 100 in counted:
            truth.append((draw(stored), draw(st.booleans()) and draw(st.booleans())))
        else:
            truth.append((draw(st.sampled_from([OWN_P, OWN_R, DUPLICATE, ABSENT])), False))
    counters = {"processed": 0, "rejected": 0, "duplicates": 0}
    name = {OWN_P: "processed", OWN_R: "rejected", DUPLICATE: "duplicates"}
    for index, (state, _) in enumerate(truth):
        if index // 100 in counted:
            counters[name[state]] += 1
    skew = draw(st.sampled_from([None, "processed", "rejected", "duplicates"]))
    if skew:
        counters[skew] += draw(st.sampled_from([-1, 1])) if counters[skew] else 1
    return {
        "accepted": accepted,
        "truth": truth,
        "counted": counted,
        "counters": counters,
        "skewed": skew is not None,
        "queued": draw(st.booleans()),
        "dead": draw(st.booleans()),
    }


@settings(max_examples=examples(200), deadline=None)
@given(batch_states(), st.booleans())
def test_classification_matches_the_records(case: dict[str, Any], client_ids: bool) -> None:
    batch_id = "01JD8X3Y5Z6A7B8C9D0E1F2G3H"
    ids = [f"c-{i}" if client_ids else f"{batch_id}-{i}" for i in range(case["accepted"])]
    found = {
        record_id: Found(batch_id if state != DUPLICATE else OTHER_BATCH, state)
        for record_id, (state, lost) in zip(ids, case["truth"], strict=True)
        if state != ABSENT and not lost
    }
    batch = BatchState(batch_id, case["accepted"], counted=case["counted"], **case["counters"])
    complete = all(chunk in case["counted"] for chunk in range(math.ceil(case["accepted"] / 100)))
    state = (
        "complete"
        if complete
        else "dead-lettered"
        if case["dead"]
        else "pending"
        if case["queued"]
        else "stuck"
    )

    verdict = classify(batch, ids, found, case["queued"], case["dead"])

    assert verdict.state == state
    lost = [record_id for record_id, (_, gone) in zip(ids, case["truth"], strict=True) if gone]
    not_stored = [record_id for record_id in ids if record_id not in found]
    listed = [record_id for record_id, _ in verdict.missing]
    assert len(listed) == len(set(listed)) and set(listed) <= set(ids)
    assert set(listed) == set(not_stored if state in ("dead-lettered", "stuck") else lost)
    assert verdict.verified is not None and sum(verdict.verified.values()) == case["accepted"]
    assert verdict.verified["missing"] == len(not_stored)
    # A gap exactly when a record is not accounted for: lost from a counted chunk, in a batch no delivery
    # will finish, or counted wrongly.
    assert verdict.gap == (state in ("dead-lettered", "stuck") or bool(lost) or case["skewed"])

    blind = classify(batch, None, None, case["queued"], case["dead"])
    assert blind.state == state and blind.missing == [] and blind.verified is None
    if not case["skewed"]:
        assert blind.gap == (state in ("dead-lettered", "stuck"))  # blind to a lost record item
    if blind.gap:
        assert verdict.gap  # reading the records never hides what the counters show


def test_cost_estimate_at_100_million_records() -> None:
    full = estimate_cost(100_000_000, records_per_request=500, hours=24)
    assert full["requests"] == 200_000
    assert full["s3ListCalls"] == 200 + 24
    assert full["dynamodbBatchGetCalls"] == 2_000 + 1_000_000
    assert full["readUnits"] == 100_000 + 50_000_000
    assert round(full["usd"], 2) == 6.26  # the README's figure: 50.1 M read units, and pennies of LIST
    fast = estimate_cost(100_000_000, records_per_request=500, hours=24, counts_only=True)
    assert fast["dynamodbBatchGetCalls"] == 2_000 and round(fast["usd"], 3) == 0.014
    assert json.dumps(full)  # plain numbers: the README table is generated from them
