"""SQS -> processor: real moto SQS with the template's redrive policy, the event source mapping played by
the harness (receive, invoke, delete successes, failures become visible again)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.handlers.harness import Pipeline, fail_calls


def accept(
    pipeline: Pipeline, records: list[dict[str, Any]], request_id: str | None = None
) -> dict[str, Any]:
    response = pipeline.post_records({"records": records}, request_id=request_id)
    assert response.status == 202, response.body
    body: dict[str, Any] = response.body
    return body


def batch(pipeline: Pipeline, batch_id: str) -> dict[str, Any]:
    response = pipeline.get_batch(batch_id)
    assert response.status == 200
    view: dict[str, Any] = response.body
    return view


def record(pipeline: Pipeline, record_id: str) -> dict[str, Any]:
    """The stored record with its long attribute names, as the query path reads it."""
    from rtp_pipeline.storage import PipelineTable

    item = PipelineTable(pipeline.dynamodb, pipeline.table_name).get_record(record_id)  # GetItem REC#id
    assert item is not None, f"record {record_id} was not stored"
    return item


def records(pipeline: Pipeline, record_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """`record` for many ids, read in bulk (BatchGetItem) and shown as the query path shows them."""
    from rtp_pipeline.storage import long_named_record

    found = pipeline.items(f"REC#{record_id}" for record_id in record_ids)
    missing = [pk for pk, item in found.items() if item is None]
    assert not missing, f"records not stored: {missing}"
    return {
        pk.removeprefix("REC#"): long_named_record(pk.removeprefix("REC#"), item or {})
        for pk, item in found.items()
    }


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_every_record_is_processed_with_the_default_enrichment(pipeline: Pipeline) -> None:
    data = {"sku": "A-1", "qty": 2, "price": 9.99, "tags": ["x", "y"]}
    accepted = accept(
        pipeline,
        [
            {
                "id": "o-1",
                "type": "Order",
                "data": data,
                "source": " shop ",
                "timestamp": "2024-05-01T10:00:00+02:00",
            },
            {"id": "o-2", "type": "order", "data": {"b": 1, "a": 2}},
        ],
    )
    [delivery] = pipeline.drain()
    assert delivery.failures == [] and delivery.raised is None

    first = record(pipeline, "o-1")
    assert (first["status"], first["batchId"], first["type"]) == ("PROCESSED", accepted["batchId"], "order")
    result = first["result"]
    assert result["type"] == "order" and result["source"] == "shop"
    assert result["data"] == data  # floats survive the round trip through DynamoDB numbers
    assert result["eventTime"] == "2024-05-01T08:00:00.000Z"
    received, processed = parse(result["receivedAt"]), parse(result["processedAt"])
    assert timedelta(0) <= processed - received < timedelta(seconds=30)
    # Both times are shown to the millisecond; the latency is computed before rounding.
    assert abs(result["ingestLatencyMs"] - (processed - received).total_seconds() * 1000) <= 1
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert result["contentHash"] == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    assert first["processedAt"] == result["processedAt"] and first["recordId"] == "o-1"
    assert first["expiresAt"] > datetime.now(UTC).timestamp()  # TTL attribute set

    second = record(pipeline, "o-2")["result"]
    assert second["source"] == "unknown" and second["eventTime"] == second["receivedAt"]

    view = batch(pipeline, accepted["batchId"])
    assert (view["status"], view["processed"], view["rejected"], view["pending"]) == ("COMPLETE", 2, 0, 0)
    assert pipeline.queued() == 0 and pipeline.queued(pipeline.dlq_url) == 0


def test_the_tests_bulk_reads_answer_as_one_read_per_key_does(pipeline: Pipeline) -> None:
    """`Pipeline.items` and `records` (what the assertions here read) against GetItem and the query path,
    across the 100-key cut of BatchGetItem, with a key that is not stored and one asked twice."""
    accepted = accept(pipeline, [{"type": "t", "data": {"n": n}} for n in range(150)])
    pipeline.drain()
    pks = [f"REC#{record_id}" for record_id in accepted["ids"]] + [
        "REC#never-stored",
        f"BATCH#{accepted['batchId']}",
    ]
    assert pipeline.items(pks + pks[:3]) == {pk: pipeline.item(pk) for pk in pks}
    assert pipeline.items(["REC#never-stored"]) == {"REC#never-stored": None}
    assert records(pipeline, accepted["ids"]) == {rid: record(pipeline, rid) for rid in accepted["ids"]}
    with pytest.raises(AssertionError, match="never-stored"):
        records(pipeline, ["never-stored"])


def test_rejected_records_keep_their_reason_and_are_not_retried(pipeline: Pipeline) -> None:
    future = iso(datetime.now(UTC) + timedelta(hours=1))
    accepted = accept(
        pipeline,
        [
            {"id": "ok", "type": "order", "data": {"x": 0.5}},
            {"id": "empty", "type": "order", "data": {}},
            {"id": "future", "type": "order", "data": {"x": 1}, "timestamp": future},
        ],
    )
    deliveries = pipeline.drain()

    assert len(deliveries) == 1 and deliveries[0].failures == []  # delivered once, nothing to retry
    assert record(pipeline, "ok")["status"] == "PROCESSED"
    empty, ahead = record(pipeline, "empty"), record(pipeline, "future")
    assert empty["status"] == ahead["status"] == "REJECTED"
    assert "data is empty" in empty["reason"]
    assert "in the future" in ahead["reason"] and future in ahead["reason"]
    assert "result" not in empty
    assert empty["type"] == "order"
    view = batch(pipeline, accepted["batchId"])
    assert (view["status"], view["processed"], view["rejected"]) == ("COMPLETE", 1, 2)
    assert pipeline.queued() == 0 and pipeline.queued(pipeline.dlq_url) == 0


def test_redelivery_of_the_same_message_never_duplicates_or_double_counts(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    accepted = accept(pipeline, [{"type": "t", "data": {"n": n}} for n in range(3)])
    event = pipeline.receive()
    capsys.readouterr()

    first = pipeline.invoke("processor", event)
    stored = {record_id: record(pipeline, record_id) for record_id in accepted["ids"]}
    second = pipeline.invoke("processor", event)  # SQS delivers at least once

    assert first == second == {"batchItemFailures": []}
    assert {record_id: record(pipeline, record_id) for record_id in accepted["ids"]} == stored
    view = batch(pipeline, accepted["batchId"])
    assert (view["accepted"], view["processed"], view["rejected"], view["duplicates"]) == (3, 3, 0, 0)
    # The metrics count what each delivery stored: the redelivery adds nothing.
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert [doc["RecordsProcessed"] for doc in emitted] == [[3.0], [0.0]]
    assert all(doc["IngestToProcessedLatency"][0] >= 0 for doc in emitted)


def test_a_record_id_reused_by_another_batch_counts_as_a_duplicate_once(pipeline: Pipeline) -> None:
    first = accept(pipeline, [{"id": "shared", "type": "t", "data": {"from": "first"}}])
    pipeline.drain()
    second = accept(
        pipeline,
        [
            {"id": "shared", "type": "t", "data": {"from": "second"}},
            {"id": "own", "type": "t", "data": {"k": 1}},
        ],
    )
    event = pipeline.receive()
    pipeline.invoke("processor", event)
    pipeline.invoke("processor", event)  # redelivered: the duplicate is not counted again

    kept = record(pipeline, "shared")
    assert kept["batchId"] == first["batchId"] and kept["result"]["data"] == {"from": "first"}
    view = batch(pipeline, second["batchId"])
    assert (view["status"], view["processed"], view["duplicates"], view["pending"]) == ("COMPLETE", 1, 1, 0)
    assert batch(pipeline, first["batchId"])["duplicates"] == 0


def test_transient_failure_fails_only_that_message_and_redelivery_completes_it(pipeline: Pipeline) -> None:
    from rtp_pipeline.aws import client

    batches = [accept(pipeline, [{"type": "t", "data": {"n": n}}]) for n in range(3)]
    flaky = batches[1]["batchId"]
    failed = fail_calls(
        client("s3"), "GetObject", lambda params: flaky in params["Key"] and not failed, "SlowDown"
    )

    event = pipeline.receive()
    assert len(event["Records"]) == 3
    response = pipeline.invoke("processor", event)

    [flaky_message] = [r["messageId"] for r in event["Records"] if flaky in r["body"]]
    assert response == {"batchItemFailures": [{"itemIdentifier": flaky_message}]}
    assert len(failed) == 1
    assert [batch(pipeline, b["batchId"])["status"] for b in batches] == [
        "COMPLETE",
        "IN_PROGRESS",
        "COMPLETE",
    ]
    assert "SlowDown" in batch(pipeline, flaky)["lastError"]

    # The event source mapping deletes the two successes and leaves the failure for redelivery.
    with pipeline.recorder.acting("processor [event source mapping]"):
        for message in event["Records"]:
            if message["messageId"] != flaky_message:
                pipeline.sqs.delete_message(
                    QueueUrl=pipeline.queue_url, ReceiptHandle=message["receiptHandle"]
                )
    pipeline.sqs.change_message_visibility(
        QueueUrl=pipeline.queue_url,
        ReceiptHandle=next(r["receiptHandle"] for r in event["Records"] if r["messageId"] == flaky_message),
        VisibilityTimeout=0,
    )
    [redelivery] = pipeline.drain()
    assert redelivery.message_ids == [flaky_message] and redelivery.failures == []
    view = batch(pipeline, flaky)
    assert (view["status"], view["processed"]) == ("COMPLETE", 1)
    assert pipeline.queued() == 0 and pipeline.queued(pipeline.dlq_url) == 0


def test_poison_message_lands_in_the_dlq_after_max_receive_count(pipeline: Pipeline) -> None:
    good = accept(pipeline, [{"type": "t", "data": {"ok": True}}])
    poison = accept(pipeline, [{"type": "t", "data": {"ok": False}}])
    [poison_key] = [key for key in pipeline.raw_keys() if poison["batchId"] in key]
    pipeline.s3.delete_object(Bucket=pipeline.bucket, Key=poison_key)  # the claim now points nowhere

    deliveries = pipeline.drain()

    attempts = [d for d in deliveries if d.failures]
    assert len(attempts) == pipeline.max_receive_count == 3  # maxReceiveCount from the template
    assert all(len(d.failures) == 1 and d.failures == attempts[0].failures for d in attempts)
    assert batch(pipeline, good["batchId"])["status"] == "COMPLETE"  # its neighbour was not held back
    assert pipeline.queued() == 0
    [dead] = pipeline.peek(pipeline.dlq_url)
    assert json.loads(dead["Body"])["batchId"] == poison["batchId"]
    # Receives counted like SQS: maxReceiveCount deliveries (moved on the next receive), plus our peek.
    assert int(dead["Attributes"]["ApproximateReceiveCount"]) == pipeline.max_receive_count + 1
    view = batch(pipeline, poison["batchId"])
    assert view["status"] == "IN_PROGRESS" and "NoSuchKey" in view["lastError"]


def test_whole_batch_failure_is_retried_as_a_whole(pipeline: Pipeline) -> None:
    """Every message failing: Powertools raises, Lambda retries all of them (none deleted)."""
    from rtp_pipeline.aws import client

    accept(pipeline, [{"type": "t", "data": {"n": 1}}])
    failed = fail_calls(client("dynamodb"), "PutItem", lambda _: not failed, "InternalServerError", 500)
    delivery = pipeline.deliver()
    assert delivery.raised is not None and delivery.failures == delivery.message_ids
    [retry] = pipeline.drain()
    assert retry.failures == []


def test_a_crash_between_the_record_puts_and_the_counter_update_loses_and_doubles_nothing(
    pipeline: Pipeline,
) -> None:
    """Every record of the first chunk stored, then the counter update fails (as a crash would leave it):
    the redelivery counts that chunk from the stored items (not transforming them again), once."""
    from rtp_pipeline.aws import client

    accepted = accept(
        pipeline, [{"type": "t", "data": {"n": n}} for n in range(150)] + [{"type": "t", "data": {}}]
    )
    failed = fail_calls(
        client("dynamodb"),
        "UpdateItem",
        lambda params: not failed and "NS" in params.get("ExpressionAttributeValues", {}).get(":c", {}),
        "InternalServerError",
        500,
    )
    first = pipeline.deliver()
    assert first.failures == first.message_ids and len(failed) == 1
    assert all(pipeline.items(f"REC#{record_id}" for record_id in accepted["ids"][:100]).values())  # stored,
    # uncounted
    assert batch(pipeline, accepted["batchId"])["status"] == "IN_PROGRESS"
    [redelivery] = pipeline.drain()
    assert redelivery.failures == []
    view = batch(pipeline, accepted["batchId"])
    assert (view["status"], view["processed"], view["rejected"], view["duplicates"]) == (
        "COMPLETE",
        150,
        1,
        0,
    )
    assert pipeline.queued() == 0


def test_the_processor_rechecks_the_schema_of_what_it_reads(pipeline: Pipeline) -> None:
    """Whatever sits in the raw object is validated again: a record that breaks the schema is REJECTED."""
    key = "raw/2024/01/01/00/01HZZZZZZZZZZZZZZZZZZZZZZZ.json"
    pipeline.s3.put_object(Bucket=pipeline.bucket, Key=key, Body=b'{"data": {"x": 1}, "id": "no-type"}')
    claim = {
        "batchId": "01HZZZZZZZZZZZZZZZZZZZZZZZ",
        "bucket": pipeline.bucket,
        "key": key,
        "correlationId": "c-1",
        "receivedAt": iso(datetime.now(UTC)),
        "recordCount": 1,
    }
    from rtp_pipeline.storage import ClaimCheck, PipelineTable

    body = json.dumps(claim)
    # As ingest does before enqueueing: the batch item its counters go to.
    PipelineTable(pipeline.dynamodb, pipeline.table_name).create_batch(
        ClaimCheck.from_json(body), ["no-type"], datetime.now(UTC) + timedelta(days=1), datetime.now(UTC)
    )
    pipeline.sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=body)
    [delivery] = pipeline.drain()
    assert delivery.failures == []
    stored = record(pipeline, "no-type")
    assert stored["status"] == "REJECTED" and stored["reason"] == "schema: type is required"


def test_transform_contract_reject_versus_fault(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """RejectRecord -> REJECTED, never retried; a value DynamoDB cannot hold -> REJECTED; any other
    exception -> the message fails and is retried."""
    from rtp_pipeline.contract import RejectRecord

    def custom(record: dict[str, Any], context: Any) -> dict[str, Any]:
        kind = record["data"]["kind"]
        if kind == "reject":
            raise RejectRecord("business rule says no")
        if kind == "nan":
            return {"value": float("nan")}
        if kind == "fault":
            raise ConnectionError("downstream timed out")
        return {"kind": kind, "record": context.record_id}

    monkeypatch.setattr(pipeline.module("processor").transform, "transform", custom)
    accepted = accept(
        pipeline,
        [{"id": k, "type": "t", "data": {"kind": k}} for k in ("fine", "reject", "nan")],
    )
    faulty = accept(pipeline, [{"id": "fault", "type": "t", "data": {"kind": "fault"}}])
    first = pipeline.deliver()

    assert record(pipeline, "fine")["result"] == {"kind": "fine", "record": "fine"}
    assert record(pipeline, "reject")["reason"] == "business rule says no"
    assert record(pipeline, "nan")["status"] == "REJECTED"
    assert record(pipeline, "nan")["reason"].startswith("result cannot be stored")
    assert batch(pipeline, accepted["batchId"])["status"] == "COMPLETE"
    assert len(first.failures) == 1 and pipeline.item("REC#fault") is None
    assert "ConnectionError" in batch(pipeline, faulty["batchId"])["lastError"]


def test_correlation_id_is_carried_from_the_api_request_to_the_processor_logs(
    pipeline: Pipeline, function_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    accepted = accept(pipeline, [{"type": "t", "data": {"secret": "s3cr3t"}}], request_id="req-corr")
    pipeline.drain()
    logs = function_logs()
    [processed] = [entry for entry in logs if entry["message"] == "batch processed"]
    assert processed["correlation_id"] == "req-corr"
    assert processed["batch_id"] == accepted["batchId"]
    assert processed["service"] == "processor"
    assert "s3cr3t" not in json.dumps(logs)  # no payload logging


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        ({"text": "\ud800"}, "lone UTF-16 surrogate"),
        ({"": 1}, "empty key"),
        ({"n": 10**38 + 1}, "39 significant digits"),
        ({"blob": "x" * 409_000}, "the item is"),
        ({"deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}, "32 levels"),
        ({"odd": {1, 2}}, "not a JSON value"),
    ],
    ids=["surrogate", "empty-key", "digits", "size", "depth", "set"],
)
def test_a_result_the_store_cannot_hold_is_rejected_and_its_neighbours_processed(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, result: dict[str, Any], reason: str
) -> None:
    def custom(record: dict[str, Any], context: Any) -> dict[str, Any]:
        return result if context.record_id == "odd" else {"fine": context.record_id}

    monkeypatch.setattr(pipeline.module("processor").transform, "transform", custom)
    accepted = accept(pipeline, [{"id": i, "type": "t", "data": {"i": i}} for i in ("a", "odd", "b")])
    [delivery] = pipeline.drain()

    assert delivery.failures == []
    odd = pipeline.get_record("odd")
    assert odd.status == 200 and odd.body["status"] == "REJECTED"
    assert odd.body["reason"].startswith("result cannot be stored: ") and reason in odd.body["reason"]
    assert pipeline.get_record("a").body["result"] == {"fine": "a"}
    view = batch(pipeline, accepted["batchId"])
    assert (view["status"], view["processed"], view["rejected"]) == ("COMPLETE", 2, 1)


def test_a_transform_returning_no_dict_is_a_fault_to_fix_not_a_rejection(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the transform, not in the record: the message fails (and can be redriven once fixed)."""
    monkeypatch.setattr(pipeline.module("processor").transform, "transform", lambda record, context: [1])
    accepted = accept(pipeline, [{"type": "t", "data": {"x": 1}}])
    deliveries = pipeline.drain()
    assert len(deliveries) == pipeline.max_receive_count and pipeline.queued(pipeline.dlq_url) == 1
    assert "must return a dict" in batch(pipeline, accepted["batchId"])["lastError"]
