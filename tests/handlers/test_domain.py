"""The plain domain functions the handlers call: validation, the transform contract, batch ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rtp_pipeline.contract import RejectRecord, TransformContext
from rtp_pipeline.errors import ApiError
from rtp_pipeline.ingest import check_content_type, duplicate_ids, new_batch_id, record_ids
from rtp_pipeline.settings import Settings
from rtp_pipeline.storage import CROCKFORD as _CROCKFORD
from rtp_pipeline.validation import (
    SUPPORTED_KEYWORDS,
    parse_rfc3339,
    record_schema,
    validate_record,
    validate_request,
)
from transform import MAX_CLOCK_SKEW, transform

# --- validation -----------------------------------------------------------------------------------
_SCHEMA_VALUED = {"properties", "items"}  # keywords whose values hold sub-schemas


def _keywords(schema: dict[str, Any]) -> set[str]:
    found = set(schema)
    for name, subschema in schema.get("properties", {}).items():
        assert isinstance(subschema, dict), name
        found |= _keywords(subschema)
    if isinstance(schema.get("items"), dict):
        found |= _keywords(schema["items"])
    return found


def test_the_schema_uses_only_keywords_the_validator_implements() -> None:
    used = _keywords(record_schema())
    assert used <= SUPPORTED_KEYWORDS, (
        f"unsupported keywords in record.schema.json: {used - SUPPORTED_KEYWORDS}"
    )
    assert {"type", "required", "properties", "pattern"} <= used  # the walk reached the properties


def test_keyword_walk_would_catch_an_unsupported_keyword() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}
    assert "minimum" in _keywords(schema) - SUPPORTED_KEYWORDS


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"type": "t", "data": {}}, []),
        (
            {
                "id": "a.b:c-d_1",
                "type": "t",
                "data": {"x": 1},
                "source": "s",
                "timestamp": "2024-01-01T00:00:00Z",
            },
            [],
        ),
        ({"data": {}}, [("type", "is required")]),
        ({"type": "t"}, [("data", "is required")]),
        ({"type": "t", "data": []}, [("data", "must be of type object")]),
        ({"type": True, "data": {}}, [("type", "must be of type string")]),
        ({"type": "t", "data": {}, "extra": 1}, [("extra", "is not allowed")]),
        (
            {"type": "-t", "data": {}},
            [("type", "does not match the required format ^[A-Za-z0-9][A-Za-z0-9._:-]*$")],
        ),
        ({"type": "t" * 65, "data": {}}, [("type", "must be at most 64 characters")]),
        (
            {"id": "", "type": "t", "data": {}},
            [("id", "must be at least 1 characters"), ("id", "does not match")],
        ),
        ({"type": "t", "data": {}, "timestamp": "2024-01-01"}, [("timestamp", "does not match")]),
        ("not an object", [("(body)", "must be of type object")]),
    ],
)
def test_validate_record(record: Any, expected: list[tuple[str, str]]) -> None:
    found = [(v.field, v.message) for v in validate_record(record, 0)]
    assert len(found) == len(expected), found
    for (field, message), (want_field, want_message) in zip(found, expected, strict=True):
        assert field == want_field and message.startswith(want_message)


def test_batch_violations_carry_index_and_prefixed_field() -> None:
    records, violations = validate_request({"records": [{"type": "t", "data": {}}, {"type": "t"}]}, 10)
    assert len(records) == 2
    assert [v.as_dict() for v in violations] == [
        {"field": "records[1].data", "message": "is required", "index": 1}
    ]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"records": [], "x": 1}, "x"),
        ({"records": "no"}, "records"),
        ({"records": []}, "records"),
        ({"records": [{}] * 3}, "records"),
        (["a"], "(body)"),
        (None, "(body)"),
    ],
)
def test_envelope_violations(payload: Any, field: str) -> None:
    records, violations = validate_request(payload, max_records=2)
    assert records == [] and [v.field for v in violations] == [field]
    assert violations[0].index is None and "index" not in violations[0].as_dict()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01t10:00:00z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01 12:00:00.250+02:00", datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_parse_rfc3339(text: str, expected: datetime) -> None:
    assert parse_rfc3339(text) == expected


def test_ids_and_duplicates() -> None:
    records: list[dict[str, Any]] = [{"id": "a"}, {}, {"id": "a"}, {"id": "b"}, {"id": "b"}]
    assert record_ids("B", records) == ["a", "B-1", "a", "b", "b"]
    assert [d["index"] for d in duplicate_ids(records)] == [2, 4]


@pytest.mark.parametrize(
    "value", ["application/json", "application/json; charset=utf-8", " APPLICATION/JSON "]
)
def test_json_content_types_pass(value: str) -> None:
    check_content_type({"content-type": value})


@pytest.mark.parametrize("value", ["text/json", "application/jsonp", ""])
def test_other_content_types_are_415(value: str) -> None:
    with pytest.raises(ApiError) as raised:
        check_content_type({"content-type": value})
    assert raised.value.status == 415


def test_api_error_body_shape() -> None:
    error = ApiError(400, "VALIDATION_ERROR", "bad", [{"field": "type"}])
    assert error.body("r-1") == {
        "error": {
            "code": "VALIDATION_ERROR",
            "message": "bad",
            "details": [{"field": "type"}],
            "requestId": "r-1",
        }
    }


def test_settings_read_the_function_environment() -> None:
    settings = Settings.from_environment({"TABLE_NAME": "t", "MAX_RECORDS": "7", "RECORD_TTL_DAYS": "3"})
    assert (settings.table_name, settings.max_records, settings.record_ttl_days) == ("t", 7, 3)
    assert settings.raw_prefix == "raw/" and settings.max_body_bytes == 3_000_000


# --- batch ids ------------------------------------------------------------------------------------
def _millis(batch_id: str) -> int:
    value = 0
    for char in batch_id:
        value = value * 32 + _CROCKFORD.index(char)
    return value >> 80


def test_batch_ids_are_ulids_that_sort_by_arrival_time() -> None:
    base = 1_700_000_000_000
    ids = [new_batch_id(base + offset) for offset in (0, 1, 2, 1000, 86_400_000)]
    assert ids == sorted(ids)
    assert all(len(i) == 26 and set(i) <= set(_CROCKFORD) for i in ids)
    assert [_millis(i) for i in ids] == [base, base + 1, base + 2, base + 1000, base + 86_400_000]
    same_ms = {new_batch_id(base) for _ in range(50)}
    assert len(same_ms) == 50  # 80 random bits


# --- the transform contract ------------------------------------------------------------------------
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def context(received: datetime = NOW - timedelta(seconds=2)) -> TransformContext:
    return TransformContext("r-1", "B", "c-1", received, NOW)


def test_default_transform_normalises_and_enriches_deterministically() -> None:
    record = {
        "type": "Click",
        "data": {"b": 1, "a": [1.5, "x"]},
        "source": " web ",
        "timestamp": "2024-05-01T11:59:00Z",
    }
    result = transform(record, context())
    assert result == transform(dict(record), context())  # deterministic: redelivery stores the same
    assert result["type"] == "click" and result["source"] == "web"
    assert result["eventTime"] == "2024-05-01T11:59:00.000Z"
    assert (
        result["receivedAt"] == "2024-05-01T11:59:58.000Z"
        and result["processedAt"] == "2024-05-01T12:00:00.000Z"
    )
    assert result["ingestLatencyMs"] == 2000
    assert json.loads(json.dumps(result)) == result  # JSON-compatible values only
    reordered = transform({**record, "data": {"a": [1.5, "x"], "b": 1}}, context())
    assert reordered["contentHash"] == result["contentHash"]  # hash of canonical JSON
    other = transform({**record, "data": {"a": [1.5, "y"], "b": 1}}, context())
    assert other["contentHash"] != result["contentHash"]


def test_default_transform_rejects_empty_data_and_future_events() -> None:
    with pytest.raises(RejectRecord, match="data is empty"):
        transform({"type": "t", "data": {}}, context())
    ahead = (NOW + MAX_CLOCK_SKEW + timedelta(seconds=1)).isoformat()
    with pytest.raises(RejectRecord, match="in the future"):
        transform({"type": "t", "data": {"x": 1}, "timestamp": ahead}, context())
    within = (NOW + MAX_CLOCK_SKEW - timedelta(seconds=1)).isoformat()
    assert transform({"type": "t", "data": {"x": 1}, "timestamp": within}, context())["type"] == "t"
