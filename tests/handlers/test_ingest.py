"""POST /records: the ingest function against moto, wired from the synthesized `local` template."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.handlers.harness import Pipeline, assert_error, fail_calls

ORDER = {"type": "order", "data": {"sku": "A-1", "qty": 2}}
RAW_KEY = re.compile(r"^raw/\d{4}/\d{2}/\d{2}/\d{2}/(?P<batch>[0-9A-Z]{26})\.json$")


def claim_checks(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [json.loads(message["Body"]) for message in pipeline.peek()]


def test_single_record_is_stored_raw_enqueued_and_accepted(pipeline: Pipeline) -> None:
    body = json.dumps(ORDER)
    response = pipeline.post_records(None, raw=body, request_id="req-single")

    assert response.status == 202
    assert set(response.body) == {"batchId", "accepted", "ids"}
    batch_id = response.body["batchId"]
    assert response.body["accepted"] == 1
    assert response.body["ids"] == [f"{batch_id}-0"]  # no client id: <batchId>-<index>

    [key] = pipeline.raw_keys()
    match = RAW_KEY.match(key)
    assert match and match["batch"] == batch_id
    stored = pipeline.s3.get_object(Bucket=pipeline.bucket, Key=key)
    assert stored["Body"].read() == body.encode()  # byte for byte what the client sent
    assert stored["Metadata"]["correlation-id"] == "req-single"

    [claim] = claim_checks(pipeline)
    assert claim["batchId"] == batch_id
    assert claim["key"] == key and claim["bucket"] == pipeline.bucket
    assert claim["correlationId"] == "req-single"  # the API request id, carried to the processor
    assert claim["recordCount"] == 1
    # A claim check: a pointer to the raw object, never the payload.
    # `byRecord`: one record, its id assigned: the batch keeps no counters (its record item is its count).
    assert set(claim) == {
        "batchId",
        "bucket",
        "key",
        "correlationId",
        "receivedAt",
        "recordCount",
        "byRecord",
    }
    assert claim["byRecord"] is True

    batch = pipeline.item(f"BATCH#{batch_id}")
    assert batch is not None
    assert (batch["accepted"], batch["processed"], batch["rejected"]) == (1, 0, 0)


def test_batch_keeps_client_ids_and_assigns_the_rest(pipeline: Pipeline) -> None:
    records = [
        {"id": "ord-1", **ORDER},
        {**ORDER, "source": "shop", "timestamp": "2024-05-01T10:00:00Z"},
        {"id": "ord-3", "type": "refund", "data": {"amount": 9.5}},
    ]
    response = pipeline.post_records({"records": records})

    assert response.status == 202
    batch_id = response.body["batchId"]
    assert response.body["accepted"] == 3
    assert response.body["ids"] == ["ord-1", f"{batch_id}-1", "ord-3"]
    assert len(pipeline.raw_keys()) == 1
    assert len(claim_checks(pipeline)) == 1  # one message per request, not per record
    assert claim_checks(pipeline)[0]["recordCount"] == 3


def test_content_type_with_charset_and_any_header_case_is_accepted(pipeline: Pipeline) -> None:
    response = pipeline.post_records(ORDER, headers={"CONTENT-TYPE": "Application/JSON; charset=utf-8"})
    assert response.status == 202


def test_base64_encoded_body_is_stored_as_sent(pipeline: Pipeline) -> None:
    from tests.handlers.harness import api_event

    body = json.dumps({"type": "note", "data": {"text": "café ☕"}}, ensure_ascii=False).encode()
    event = api_event("POST", "/records", body=body, headers={"content-type": "application/json"})
    assert event["isBase64Encoded"]
    response = pipeline.api("ingest", event)

    assert response.status == 202
    [key] = pipeline.raw_keys()
    assert pipeline.s3.get_object(Bucket=pipeline.bucket, Key=key)["Body"].read() == body


def test_invalid_records_name_index_and_field_and_nothing_is_enqueued(pipeline: Pipeline) -> None:
    records = [
        ORDER,
        {"data": {"x": 1}},  # no type
        {"type": "order", "data": "not an object"},
        {"type": "order", "data": {}, "colour": "red"},
        {"type": "order", "data": {}, "timestamp": "yesterday"},
    ]
    response = pipeline.post_records({"records": records}, request_id="req-invalid")

    details = assert_error(response, 400, "VALIDATION_ERROR", "req-invalid")
    found = {(detail["index"], detail["field"]) for detail in details}
    assert found == {
        (1, "records[1].type"),
        (2, "records[2].data"),
        (3, "records[3].colour"),
        (4, "records[4].timestamp"),
    }
    assert all(detail["message"] for detail in details)
    assert pipeline.queued() == 0
    # The raw body is kept before parsing, so a refused request can still be inspected.
    [key] = pipeline.raw_keys()
    assert (
        pipeline.s3.get_object(Bucket=pipeline.bucket, Key=key)["Body"].read()
        == json.dumps({"records": records}).encode()
    )


def test_single_invalid_record_names_the_field_without_a_prefix(pipeline: Pipeline) -> None:
    response = pipeline.post_records({"type": 5, "data": {}})
    [detail] = assert_error(response, 400, "VALIDATION_ERROR")
    assert detail == {"index": 0, "field": "type", "message": "must be of type string"}


@pytest.mark.parametrize(
    "raw",
    ["{not json", '{"type": "order", "data": {"x": NaN}}', '{"type": "t", "data": {"x": 1e999}}', "\xff"],
    ids=["syntax", "nan", "infinity", "not-utf8"],
)
def test_invalid_json_is_400_and_still_kept_raw(pipeline: Pipeline, raw: str) -> None:
    body = raw.encode("latin-1")
    from tests.handlers.harness import api_event

    event = api_event("POST", "/records", body=body, headers={"content-type": "application/json"})
    response = pipeline.api("ingest", event)

    assert_error(response, 400, "INVALID_JSON", event["requestContext"]["requestId"])
    assert pipeline.queued() == 0
    [key] = pipeline.raw_keys()
    assert pipeline.s3.get_object(Bucket=pipeline.bucket, Key=key)["Body"].read() == body


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(pipeline: Pipeline, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = pipeline.post_records(ORDER, headers=headers, request_id="req-415")
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE", "req-415")
    assert pipeline.queued() == 0


def test_body_over_the_limit_is_413(pipeline: Pipeline) -> None:
    limit = int(pipeline.functions["ingest"].environment["MAX_BODY_BYTES"])  # as the stack sets it
    prefix = '{"type": "blob", "data": {"fill": "'
    raw = prefix + "x" * (limit - len(prefix) - 3 + 1) + '"}}'
    assert len(raw) == limit + 1
    response = pipeline.post_records(None, raw=raw)
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert pipeline.queued() == 0
    assert pipeline.raw_keys() == []  # refused before storing: too large to keep


def test_too_many_records_is_400_on_the_envelope(pipeline: Pipeline) -> None:
    limit = int(pipeline.functions["ingest"].environment["MAX_RECORDS"])
    response = pipeline.post_records({"records": [ORDER] * (limit + 1)})
    [detail] = assert_error(response, 400, "VALIDATION_ERROR")
    assert detail["field"] == "records" and str(limit) in detail["message"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"records": []}, "records"), ({"records": {}}, "records"), ([ORDER], "(body)"), ("text", "(body)")],
    ids=["empty", "not-a-list", "bare-array", "string"],
)
def test_bad_envelope_is_400(pipeline: Pipeline, payload: Any, field: str) -> None:
    [detail] = assert_error(pipeline.post_records(payload), 400, "VALIDATION_ERROR")
    assert detail["field"] == field


def test_duplicate_ids_in_one_request_are_400(pipeline: Pipeline) -> None:
    records = [{"id": "a", **ORDER}, {"id": "b", **ORDER}, {"id": "a", **ORDER}]
    details = assert_error(pipeline.post_records({"records": records}), 400, "VALIDATION_ERROR")
    assert details == [{"index": 2, "field": "records[2].id", "message": "duplicates records[0].id"}]
    assert pipeline.queued() == 0


def test_ids_shaped_like_the_ones_the_api_assigns_are_400(pipeline: Pipeline) -> None:
    """Only a record's own batch may write an id the API assigned (storage writes those unconditionally)."""
    taken = pipeline.post_records({"records": [ORDER]}).body["ids"][0]  # e.g. 01KB...-0
    records = [
        {"id": taken, **ORDER},
        {"id": "01kb3x9z8q7w6v5t4s3r2p1n0m-1", **ORDER},
        {"id": "order-7", **ORDER},
    ]
    details = assert_error(pipeline.post_records({"records": records}), 400, "VALIDATION_ERROR")
    assert details == [
        {"index": 0, "field": "records[0].id", "message": "has the form of an id the API assigns"}
    ]
    assert pipeline.post_records({"records": records[1:]}).status == 202  # lower case: not a batch id


def test_idempotency_key_replays_the_same_batch_and_stores_nothing_twice(pipeline: Pipeline) -> None:
    """A retry answers the first request's batch. Until that batch is settled the retry enqueues its claim
    check again (the first request may have died before enqueueing: no lease, no "enqueued" mark to write);
    the processor stores and counts the batch once however many claim checks arrive. Once settled, a retry
    enqueues nothing."""
    headers = {"Content-Type": "application/json", "Idempotency-Key": "client-retry-1"}
    payload = {"records": [ORDER, {"id": "x-2", **ORDER}]}
    first = pipeline.post_records(payload, headers=headers)
    again = pipeline.post_records(payload, headers=headers)

    assert first.status == again.status == 202
    assert again.body == first.body
    assert again.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    # One peek: a peek is a receive, and each counts towards the DLQ's maxReceiveCount.
    claims = claim_checks(pipeline)
    assert [claim["batchId"] for claim in claims] == [first.body["batchId"]] * 2
    assert claims[1].pop("resent") is True  # read like a redelivery (test_replay.py shows why)
    assert claims[0] == claims[1]  # the first request's claim check: its raw object, its correlation id

    pipeline.drain()
    batch = pipeline.get_batch(first.body["batchId"]).body
    assert (batch["status"], batch["accepted"], batch["processed"], batch["duplicates"]) == (
        "COMPLETE",
        2,
        2,
        0,
    )
    settled = pipeline.post_records(payload, headers=headers)
    assert settled.body == first.body and pipeline.queued() == 0


def test_a_key_costs_no_write_of_its_own_its_batch_item_is_the_claim(pipeline: Pipeline) -> None:
    """With an Idempotency-Key the batch id is keyed (time, `K`, the key's hash) and its batch item, on a
    key without the time, is the claim: ingest writes one DynamoDB item per request, key or not."""
    headers = {"Content-Type": "application/json", "Idempotency-Key": "k-one-write"}
    start = len(pipeline.recorder.calls)
    first = pipeline.post_records(ORDER, headers=headers)
    plain = pipeline.post_records(ORDER)
    writes = [
        (call.operation, call.params["Item"]["pk"]["S"])
        for call in pipeline.recorder.since(start)
        if call.service == "dynamodb"
    ]
    batch_id = first.body["batchId"]
    assert len(batch_id) == 27 and batch_id[10] == "K" and len(plain.body["batchId"]) == 26
    assert writes == [("PutItem", "BATCH#" + batch_id[10:]), ("PutItem", "BATCH#" + plain.body["batchId"])]
    assert pipeline.get_batch(batch_id).body["batchId"] == batch_id
    assert pipeline.get_batch(batch_id[:10] + "K" + "0" * 16).status == 404  # another key's id: no batch


def test_two_requests_with_one_key_in_one_millisecond_keep_the_first_body(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same key, same millisecond: the same keyed batch id, so the same raw object name. The raw object is
    written only if absent (If-None-Match: *): the second request gets 409 and overwrites nothing, and the
    first batch is processed from its own body."""
    import rtp_pipeline.ingest

    moment = datetime(2026, 11, 29, 8, 0, 0, 123_000, tzinfo=UTC)

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Frozen:
            return cls.fromtimestamp(moment.timestamp(), tz)

    monkeypatch.setattr(rtp_pipeline.ingest, "datetime", Frozen)
    headers = {"Content-Type": "application/json", "Idempotency-Key": "k-same-ms"}
    first = pipeline.post_records(ORDER, headers=headers)
    assert first.status == 202
    other = {"type": "order", "data": {"sku": "B-2"}}
    assert_error(pipeline.post_records(other, headers=headers), 409, "IDEMPOTENCY_KEY_IN_USE")
    [key] = pipeline.raw_keys()
    assert json.loads(pipeline.s3.get_object(Bucket=pipeline.bucket, Key=key)["Body"].read()) == ORDER
    pipeline.drain()
    assert pipeline.get_batch(first.body["batchId"]).body["processed"] == 1


def test_idempotency_key_with_another_body_is_422(pipeline: Pipeline) -> None:
    headers = {"Content-Type": "application/json", "Idempotency-Key": "k-422"}
    assert pipeline.post_records(ORDER, headers=headers).status == 202
    other = pipeline.post_records({"type": "order", "data": {"sku": "B-2"}}, headers=headers)
    assert_error(other, 422, "IDEMPOTENCY_KEY_REUSED")
    assert len(claim_checks(pipeline)) == 1


def test_a_key_lives_as_long_as_its_batch_item_and_is_new_once_that_expired(pipeline: Pipeline) -> None:
    """The batch item is the key's claim (rtp_pipeline.idempotency): one write. Once that item is past its
    `expiresAt` (TTL deletes lag: it may still be there), the key is claimed afresh, a new batch, instead
    of answering from a batch whose records may be gone."""
    from rtp_pipeline.storage import batch_pk

    headers = {"Content-Type": "application/json", "Idempotency-Key": "k-expired"}
    first = pipeline.post_records(ORDER, headers=headers)
    assert not pipeline.item("IDEM#k-expired")  # no item of its own
    pk = batch_pk(first.body["batchId"])
    assert (
        pk != f"BATCH#{first.body['batchId']}"
        and (pipeline.item(pk) or {})["batchId"] == first.body["batchId"]
    )
    pipeline.dynamodb.update_item(  # the batch's retention passes
        TableName=pipeline.table_name,
        Key={"pk": {"S": pk}},
        UpdateExpression="SET expiresAt = :past",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )
    later = pipeline.post_records(ORDER, headers=headers)
    assert later.status == 202 and "idempotent-replayed" not in later.headers
    assert later.body["batchId"] != first.body["batchId"]
    again = pipeline.post_records(ORDER, headers=headers)
    assert again.body == later.body and again.headers.get("idempotent-replayed") == "true"


def test_idempotency_key_too_long_is_400(pipeline: Pipeline) -> None:
    headers = {"Content-Type": "application/json", "Idempotency-Key": "k" * 256}
    assert_error(pipeline.post_records(ORDER, headers=headers), 400, "VALIDATION_ERROR")


def test_failure_after_the_key_is_claimed_is_a_500_and_the_retry_finishes_the_work(
    pipeline: Pipeline,
) -> None:
    """SQS fails once (after the SDK's retries): 500 with the request id; the client retries with its key
    and the retry enqueues the first request's batch (its claim check, its raw object), stored once."""
    from rtp_pipeline.aws import client

    failed = fail_calls(client("sqs"), "SendMessage", lambda _: not failed, "ServiceUnavailable")
    headers = {"Content-Type": "application/json", "Idempotency-Key": "k-500"}

    broken = pipeline.post_records(ORDER, headers=headers, request_id="req-500")
    assert_error(broken, 500, "INTERNAL_ERROR", "req-500")
    assert len(failed) == 1 and pipeline.queued() == 0

    retried = pipeline.post_records(ORDER, headers=headers)
    assert retried.status == 202
    [claim] = claim_checks(pipeline)
    assert claim["batchId"] == retried.body["batchId"]
    assert claim["correlationId"] == "req-500"  # the first request's, recorded with the key
    pipeline.drain()
    view = pipeline.get_batch(retried.body["batchId"]).body
    assert (view["status"], view["processed"]) == ("COMPLETE", 1)
    third = pipeline.post_records(ORDER, headers=headers)
    assert third.body == retried.body and pipeline.queued() == 0


def test_a_request_that_died_after_claiming_its_key_is_finished_by_the_retry_and_stored_once(
    pipeline: Pipeline,
) -> None:
    """The first request claims its key (writes its batch item) and dies before enqueueing (no lease to
    wait out: the retry answers 202 with the first batch at once and sends its claim check, `resent`). A
    claim check of the same batch that still arrives later (the first request was only slow) stores and
    counts nothing twice."""
    from rtp_pipeline.aws import client

    died = fail_calls(client("sqs"), "SendMessage", lambda _: not died, "Boom")
    headers = {"Content-Type": "application/json", "Idempotency-Key": "k-died"}
    payload = {"records": [ORDER] * 5}
    assert pipeline.post_records(payload, headers=headers).status == 500
    assert len(died) == 1 and pipeline.queued() == 0

    retry = pipeline.post_records(payload, headers=headers)
    assert retry.status == 202 and retry.headers.get("idempotent-replayed") == "true"
    [claim] = claim_checks(pipeline)
    assert claim.pop("resent") is True
    pipeline.sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=json.dumps(claim))  # the slow one
    pipeline.drain()
    view = pipeline.get_batch(retry.body["batchId"]).body
    assert (view["status"], view["accepted"], view["processed"], view["duplicates"]) == ("COMPLETE", 5, 5, 0)


def test_accepted_records_are_counted_in_an_emf_metric(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline.post_records({"records": [ORDER, ORDER, ORDER]})
    pipeline.post_records({"records": [ORDER, {}]})  # refused: counts nothing
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    values = [sum(doc["RecordsAccepted"]) for doc in emitted if "RecordsAccepted" in doc]
    assert values == [3]
    [directive] = emitted[0]["_aws"]["CloudWatchMetrics"]
    # The namespace the stack gives the function (POWERTOOLS_METRICS_NAMESPACE in the template).
    assert directive["Namespace"] == pipeline.functions["ingest"].environment["POWERTOOLS_METRICS_NAMESPACE"]
    assert {"Name": "RecordsAccepted", "Unit": "Count"} in directive["Metrics"]


def test_logs_are_json_with_the_request_id_as_correlation_id(
    pipeline: Pipeline, function_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    pipeline.post_records(ORDER, request_id="req-log")
    logs = function_logs()
    accepted = [entry for entry in logs if entry["message"] == "batch accepted"]
    assert accepted and accepted[0]["correlation_id"] == "req-log"
    assert "sku" not in json.dumps(logs)  # no payload logging


def test_unknown_route_answers_in_the_error_shape(pipeline: Pipeline) -> None:
    from tests.handlers.harness import api_event

    response = pipeline.api("ingest", api_event("POST", "/nowhere", request_id="req-404"))
    assert_error(response, 404, "NOT_FOUND", "req-404")


def test_records_the_store_cannot_hold_are_refused_naming_index_and_field(pipeline: Pipeline) -> None:
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    records = [
        ORDER,
        {**ORDER, "timestamp": "2024-02-30T00:00:00Z"},
        {"type": "t", "data": {"\udc00": 1}},
        {"type": "t", "data": {"a": {"": 1}}},
        {"type": "t", "data": {"n": 10**38 + 1}},
        {"type": "t", "data": {"deep": deep}},
        {"type": "t", "data": {"s": "x" * 410_000}},
        {"type": "t", "data": {"ok": True}, "source": "\ud800"},
    ]
    response = pipeline.post_records({"records": records}, request_id="req-store")

    details = assert_error(response, 400, "VALIDATION_ERROR", "req-store")
    found = {(d["index"], d["field"].split("[0]")[0]) for d in details}
    assert found == {
        (1, "records[1].timestamp"),
        (2, 'records[2].data["\\udc00"]'),
        (3, 'records[3].data.a[""]'),
        (4, "records[4].data.n"),
        (5, "records[5].data.deep"),
        (6, "records[6].data"),
        (7, "records[7].source"),
    }
    messages = {d["index"]: d["message"] for d in details}
    assert "day is out of range" in messages[1] and "surrogate" in messages[2] and "empty" in messages[3]
    assert "39 significant digits" in messages[4] and "32 levels" in messages[5] and "bytes" in messages[6]
    assert pipeline.queued() == 0 and len(pipeline.raw_keys()) == 1  # nothing enqueued, the body kept


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 5000 + "]" * 5000,
        '{"a":' * 5000 + "1" + "}" * 5000,
        '{"type": "t", "data": {"deep": ' + "[" * 900 + "]" * 900 + "}}",
        "[" * 100_000,
    ],
    ids=["array-5000", "object-5000", "data-900", "unterminated-100000"],
)
def test_deep_json_is_a_400_never_a_500(pipeline: Pipeline, raw: str) -> None:
    response = pipeline.post_records(None, raw=raw)
    assert_error(response, 400, "INVALID_JSON")
    assert "at most 64 levels" in response.body["error"]["message"]
    assert pipeline.queued() == 0


def test_a_large_refusal_lists_the_first_100_problems(pipeline: Pipeline) -> None:
    records = [{"type": "t", "data": {"": n}} for n in range(500)]
    response = pipeline.post_records({"records": records})
    details = assert_error(response, 400, "VALIDATION_ERROR")
    assert len(details) == 100 and [d["index"] for d in details] == list(range(100))
    assert response.body["error"]["message"] == (
        "500 validation error(s); nothing was accepted; the first 100 are listed"
    )


def test_an_old_claim_check_never_counts_into_the_batch_that_reused_its_key(pipeline: Pipeline) -> None:
    """A keyed batch's item is the key's: once batch X expired and the key made batch Y, a claim check of X
    that still arrives (a DLQ redrive, say) finds Y's item. It must not lease or count there (conditions on
    `batchId`): X's message fails towards the DLQ and Y is counted exactly."""
    from rtp_pipeline.storage import batch_pk

    headers = {"Content-Type": "application/json", "Idempotency-Key": "k-reused"}
    x = pipeline.post_records({"records": [ORDER] * 5}, headers=headers)
    [x_claim] = claim_checks(pipeline)
    pipeline.drain()
    pipeline.dynamodb.update_item(  # X's retention passes
        TableName=pipeline.table_name,
        Key={"pk": {"S": batch_pk(x.body["batchId"])}},
        UpdateExpression="SET expiresAt = :past",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )
    # X's claim check arrives first (the queue hands messages out about in order): before Y counts.
    pipeline.sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=json.dumps(x_claim))
    y = pipeline.post_records({"records": [ORDER] * 3}, headers=headers)
    assert y.status == 202 and y.body["batchId"] != x.body["batchId"]
    assert batch_pk(y.body["batchId"]) == batch_pk(x.body["batchId"])
    pipeline.drain()

    view = pipeline.get_batch(y.body["batchId"]).body
    assert (view["status"], view["accepted"], view["processed"]) == ("COMPLETE", 3, 3)
    assert (pipeline.item(batch_pk(y.body["batchId"])) or {})["cc"] == [0]
    assert pipeline.queued(pipeline.dlq_url) == 1  # X's claim check: nothing to count it on


def test_any_idempotency_key_names_one_batch_whose_records_are_stored_and_readable(
    pipeline: Pipeline,
) -> None:
    """Generated keys (any text a header can carry up to 255 characters: unicode, surrogates, punctuation,
    the keyed batch id's own alphabet): each names one 27-character batch, a retry with it is answered with
    that batch, and what was accepted is stored once and readable through the API."""
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from rtp_pipeline.storage import KEYED_BATCH_ID

    from tests.tiers import examples

    used: set[str] = set()
    checked: list[str] = []

    @settings(max_examples=examples(60), deadline=None, database=None)
    @given(key=st.text(min_size=1, max_size=255).filter(lambda k: k == k.strip()), count=st.integers(1, 3))
    def check(key: str, count: int) -> None:
        if key in used:  # a key already used answers from its batch: tested above
            return
        used.add(key)
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        payload = {"records": [{**ORDER, "data": {"n": n}} for n in range(count)]}
        first = pipeline.post_records(payload, headers=headers)
        assert first.status == 202, first.body
        batch_id = first.body["batchId"]
        assert KEYED_BATCH_ID.fullmatch(batch_id)
        again = pipeline.post_records(payload, headers=headers)
        assert again.body == first.body and again.headers.get("idempotent-replayed") == "true"
        pipeline.drain()
        view = pipeline.get_batch(batch_id).body
        assert (view["status"], view["processed"]) == ("COMPLETE", count)
        for n, record_id in enumerate(first.body["ids"]):
            assert pipeline.get_record(record_id).body["batchId"] == batch_id
            assert pipeline.get_record(record_id).body["result"]["data"]["n"] == n
        checked.append(key)

    check()
    assert len(checked) >= examples(60) // 2  # hypothesis really ran them
