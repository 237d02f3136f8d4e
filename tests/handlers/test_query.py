"""GET /records/{id} and GET /batches/{batchId}: the read-only query function."""

from __future__ import annotations

from typing import Any

import pytest

from tests.handlers.harness import Pipeline, api_event, assert_error, fail_calls


def accept(pipeline: Pipeline, records: list[dict[str, Any]]) -> dict[str, Any]:
    response = pipeline.post_records({"records": records})
    assert response.status == 202
    body: dict[str, Any] = response.body
    return body


def test_record_view_shows_the_outcome_without_internal_keys(pipeline: Pipeline) -> None:
    accepted = accept(
        pipeline,
        [{"id": "ord:2024.1", "type": "order", "data": {"n": 1}}, {"id": "bad", "type": "order", "data": {}}],
    )
    pipeline.drain()

    processed = pipeline.get_record("ord:2024.1")  # ':' and '.' are allowed in ids
    assert processed.status == 200
    assert processed.headers.get("content-type") == "application/json"
    body = processed.body
    assert body["recordId"] == "ord:2024.1" and body["batchId"] == accepted["batchId"]
    assert body["status"] == "PROCESSED" and body["result"]["data"] == {"n": 1}
    assert not {"pk", "gsi1pk", "gsi1sk"} & set(body)

    rejected = pipeline.get_record("bad").body
    assert rejected["status"] == "REJECTED" and "data is empty" in rejected["reason"]


def test_batch_status_moves_from_in_progress_to_complete(pipeline: Pipeline) -> None:
    accepted = accept(pipeline, [{"type": "t", "data": {"n": 1}}, {"type": "t", "data": {}}])

    waiting = pipeline.get_batch(accepted["batchId"])
    assert waiting.status == 200
    assert waiting.body["status"] == "IN_PROGRESS"
    assert (waiting.body["accepted"], waiting.body["pending"], waiting.body["processed"]) == (2, 2, 0)
    assert waiting.body["ids"] == accepted["ids"]
    assert waiting.body["lastError"] is None

    pipeline.drain()
    done = pipeline.get_batch(accepted["batchId"]).body
    assert done["status"] == "COMPLETE"
    assert (done["accepted"], done["processed"], done["rejected"], done["duplicates"], done["pending"]) == (
        2,
        1,
        1,
        0,
        0,
    )
    assert done["correlationId"] and done["receivedAt"].endswith("Z")


@pytest.mark.parametrize("kind", ["record", "batch"])
def test_unknown_ids_are_404_in_the_error_shape(pipeline: Pipeline, kind: str) -> None:
    if kind == "record":
        event = api_event(
            "GET", "/records/nope", resource="/records/{id}", path_parameters={"id": "nope"}, request_id="q-1"
        )
    else:
        event = api_event(
            "GET",
            "/batches/nope",
            resource="/batches/{batchId}",
            path_parameters={"batchId": "nope"},
            request_id="q-1",
        )
    assert_error(pipeline.api("query", event), 404, "NOT_FOUND", "q-1")


def test_a_failing_table_is_a_500_in_the_error_shape(pipeline: Pipeline) -> None:
    from rtp_pipeline.aws import client

    fail_calls(client("dynamodb"), "GetItem", lambda _: True, "InternalServerError", 500)
    event = api_event(
        "GET", "/records/x", resource="/records/{id}", path_parameters={"id": "x"}, request_id="q-500"
    )
    assert_error(pipeline.api("query", event), 500, "INTERNAL_ERROR", "q-500")


def test_unknown_route_is_404_in_the_error_shape(pipeline: Pipeline) -> None:
    assert_error(
        pipeline.api("query", api_event("GET", "/elsewhere", request_id="q-2")), 404, "NOT_FOUND", "q-2"
    )


def test_everything_the_processor_stores_reads_back_as_sent(pipeline: Pipeline) -> None:
    """Edge values the door accepts survive ingest -> processor -> DynamoDB -> query unchanged (numbers as
    the doubles JSON readers make of them)."""
    import json

    deep: Any = "bottom"
    for _ in range(29):
        deep = {"k": deep}
    data = {
        "big": 10**40,
        "digits38": 12345678901234567890123456789012345678,
        "tiny": 1e-130,
        "huge": 9.9e125,
        "negative_zero": -0.0,
        "text": "\U0001f600 caf\u00e9 \u0000 \uffff",
        "\u00e9t\u00e9 key": [None, True, 1.5, [], {}],
        "deep": deep,
        "blob": "x" * 300_000,
    }
    accept(pipeline, [{"id": "edge", "type": "t", "data": data}])
    pipeline.drain()

    response = pipeline.get_record("edge")
    assert response.status == 200 and response.body["status"] == "PROCESSED"
    back = response.body["result"]["data"]
    assert json.loads(json.dumps(back), parse_int=float) == json.loads(json.dumps(data), parse_int=float)
    assert back["big"] == 10**40 and back["digits38"] == data["digits38"]  # integers exactly
