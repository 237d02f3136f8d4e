"""rtp_pipeline.validation: the strict JSON parser and what "storable" means, rule by rule.

Each DynamoDB rule is tested at its boundary (one side accepted, the other refused), and the number rule
also against boto3's own serializer, so the door never accepts what the processor cannot write.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rtp_pipeline.contract import TransformContext
from rtp_pipeline.storage import KEY_LIMITS, PROCESSED, Outcome, PipelineTable, deserialize, serialize
from rtp_pipeline.validation import (
    MAX_DATA_BYTES,
    MAX_ITEM_BYTES,
    MAX_JSON_DEPTH,
    MAX_NAME_BYTES,
    MAX_PROBLEMS_PER_RECORD,
    JsonDocumentError,
    _pattern,
    dynamodb_size,
    item_problems,
    json_depth,
    number_problem,
    parse_json_document,
    parse_rfc3339,
    timestamp_problem,
    validate_record,
    validate_request,
)
from transform import transform

from tests.handlers.fuzz import json_values, records
from tests.tiers import examples


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(item) for item in value), default=0)
    return 0


def wrapped(levels: int, kind: str = "map", leaf: Any = "leaf") -> Any:
    value = leaf
    for _ in range(levels):
        value = {"n": value} if kind == "map" else [value]
    return value


# --- parse_json_document -------------------------------------------------------------------------------
tricky_text = st.text(alphabet=st.sampled_from('[]{}"\\,:abc é\n'), max_size=12)
documents = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=25,
)


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_depth_is_measured_exactly_without_parsing(value: Any) -> None:
    # Strings full of brackets, quotes and backslashes must not count.
    assert json_depth(json.dumps(value)) == depth_of(value)
    assert json_depth(json.dumps(value, ensure_ascii=False, indent=1)) == depth_of(value)


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_a_plain_json_document_parses_as_json_loads_does(value: Any) -> None:
    text = json.dumps(value)
    assert parse_json_document(text) == json.loads(text)
    assert parse_json_document(text.encode()) == json.loads(text)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ('{"x": NaN}', "NaN is not a JSON number"),
        ('{"x": Infinity}', "Infinity is not a JSON number"),
        ("[-Infinity]", "-Infinity is not a JSON number"),
        ("[1e400]", "number 1e400 is out of range"),
        ("[-1e400]", "out of range"),
        ("[1e-400]", "too small to represent"),
        (b"\xff{}", "not UTF-8"),
        (b'"\xed\xa0\x80"', "not UTF-8"),  # a surrogate encoded raw is not UTF-8
        ('{"a": 1,}', "not valid JSON"),
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), f"at most {MAX_JSON_DEPTH} levels"),
        ('{"k": "\\ud800"}', "(document).k holds a lone UTF-16 surrogate"),
        ('{"\\udc00": 1}', "lone UTF-16 surrogate"),
        ('["ok", ["\\udbff\\u0041"]]', "(document)[1][0] holds a lone UTF-16 surrogate"),
        ("9" * 5000, "not valid JSON"),  # beyond Python's int digit limit: a clear 400, not a 500
    ],
)
def test_the_parser_refuses_what_json_allows_but_the_pipeline_cannot_carry(
    document: str | bytes, message: str
) -> None:
    with pytest.raises(JsonDocumentError, match=re.escape(message)):
        parse_json_document(document)
    assert issubclass(JsonDocumentError, ValueError)


def test_depth_limit_boundary_and_surrogate_opt_out() -> None:
    deepest = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert json_depth(deepest) == MAX_JSON_DEPTH and parse_json_document(deepest) is not None
    assert parse_json_document('["\\ud83d\\ude00"]') == ["\U0001f600"]  # a valid pair is one code point
    assert parse_json_document('["\\ud800"]', reject_lone_surrogates=False) == ["\ud800"]
    assert parse_json_document("[-0.0, 1e-300, 0]") == [-0.0, 1e-300, 0]


@pytest.mark.parametrize("kind", ["[", '{"k":'])
def test_pathological_nesting_is_refused_quickly(kind: str) -> None:
    """3 MB of brackets (the largest body ingest accepts) is refused in about a second at most, terminated
    or not, and never reaches the recursive parser (which would raise RecursionError: a 500)."""
    levels = 3_000_000 // (2 * len(kind))
    closing = "]" if kind == "[" else "}"
    for document in (kind * (2 * levels), kind * levels + "1" + closing * levels):
        started = time.perf_counter()
        with pytest.raises(JsonDocumentError, match="nested"):
            parse_json_document(document)
        assert time.perf_counter() - started < 5.0  # generous: a shared CI machine


# --- timestamps ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stamp", "reason"),
    [
        ("2024-02-30T00:00:00Z", "day is out of range for month"),
        ("2023-02-29T00:00:00Z", "day is out of range for month"),
        ("0000-01-01T00:00:00Z", "year 0000"),
        ("2024-13-01T00:00:00Z", "month must be in 1..12"),
        ("2024-01-01T24:00:00Z", "hour must be in 0..23"),
        ("2024-01-01T00:60:00Z", "minute must be in 0..59"),
        ("2016-12-31T23:59:60Z", "leap second"),
        ("2024-01-01T00:00:00+99:00", "offsets go up to 23:59"),
        ("2024-01-01T00:00:00-00:60", "offsets go up to 23:59"),
        ("0001-01-01T00:00:00+00:01", "outside the years 0001 to 9999 once converted to UTC"),
        ("9999-12-31T23:59:59-00:01", "outside the years 0001 to 9999 once converted to UTC"),
    ],
)
def test_impossible_instants(stamp: str, reason: str) -> None:
    problem = timestamp_problem(stamp)
    assert problem is not None and reason in problem
    [violation] = validate_record({"type": "t", "data": {}, "timestamp": stamp}, 2, "records[2].")
    assert (violation.field, violation.index) == ("records[2].timestamp", 2) and reason in violation.message
    with pytest.raises(ValueError, match=reason.split(" ")[0]):
        parse_rfc3339(stamp)


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2024-02-29T12:00:00Z", datetime(2024, 2, 29, 12, tzinfo=UTC)),
        ("2024-01-01t00:00:00.123456789z", datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2024-01-01 00:30:00+23:59", datetime(2023, 12, 31, 0, 31, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59.9-00:00", datetime(9999, 12, 31, 23, 59, 59, 900000, tzinfo=UTC)),
    ],
)
def test_real_instants_parse_to_the_same_moment(stamp: str, expected: datetime) -> None:
    assert timestamp_problem(stamp) is None
    assert parse_rfc3339(stamp) == expected
    assert validate_record({"type": "t", "data": {}, "timestamp": stamp}) == []


@pytest.mark.parametrize(
    "stamp",
    [
        "\u0662\u0660\u0662\u0664-01-01T00:00:00Z",  # Arabic-Indic digits: Python's \d matches them
        "\uff12\uff10\uff12\uff14-01-01T00:00:00Z",  # fullwidth digits
        "2024-01-01T00:00:00Z\n",  # Python's $ matches before a final newline
    ],
)
def test_the_schema_pattern_has_json_schema_semantics(stamp: str) -> None:
    [violation] = validate_record({"type": "t", "data": {}, "timestamp": stamp})
    assert violation.field == "timestamp" and "does not match" in violation.message


def test_pattern_translation() -> None:
    assert _pattern("^a$").search("a") and not _pattern("^a$").search("a\n")
    assert not _pattern(r"^\d$").search("\u0663") and _pattern(r"^\d$").search("3")
    assert _pattern("^[$]$").search("$") and _pattern(r"^\$$").search("$")  # $ in a class or escaped
    assert [v.field for v in validate_record({"type": "t\n", "data": {}, "id": "a\n"})] == ["id", "type"]


# --- what DynamoDB can store ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["map", "list"])
def test_nesting_boundary_matches_dynamodb(kind: str) -> None:
    """DynamoDB accepts an attribute value of 31 wraps around a scalar (32 levels) and refuses 32 wraps."""
    assert item_problems({"pk": "k", "data": wrapped(31, kind)}, {}) == []
    [problem] = item_problems({"pk": "k", "data": wrapped(32, kind)}, {})
    assert "at most 32 levels" in problem and "level 33" in problem
    # An empty container at level 32 is a value at level 32: accepted.
    assert item_problems({"pk": "k", "data": wrapped(31, kind, leaf={})}, {}) == []


def test_data_nesting_is_counted_where_the_processor_stores_it() -> None:
    """`data` becomes `result.data` (level 2): data may hold 30 wraps around a scalar, not 31."""
    assert validate_record({"type": "t", "data": wrapped(30)}) == []
    [violation] = validate_record({"type": "t", "data": wrapped(31)})
    assert violation.field.startswith("data.n.n") and "level 33" in violation.message
    deep = wrapped(10_000)  # far beyond recursion limits: checked iteratively, reported once
    assert len(validate_record({"type": "t", "data": deep})) == 1


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"": 1}, 'data[""]', "empty key"),
        ({"a": [{"": None}]}, 'data.a[0][""]', "empty key"),
        ({"k" * (MAX_NAME_BYTES + 1): 1}, 'data["kkkk', "longer than 65535 bytes"),
        ({"\udc00": 1}, 'data["\\udc00"]', "key holds a lone UTF-16 surrogate"),
        ({"a b": "\ud800"}, 'data["a b"]', "lone UTF-16 surrogate"),
        ({"n": 10**38 + 1}, "data.n", "39 significant digits"),
        ({"n": 1e126}, "data.n", "too large"),
        ({"n": -1e-131}, "data.n", "too small"),
        ({"n": 5e-324}, "data.n", "too small"),
        ({"s": "x" * MAX_DATA_BYTES}, "data", f"at most {MAX_DATA_BYTES} bytes"),
    ],
)
def test_data_the_store_cannot_hold_is_named_by_field(data: dict[str, Any], field: str, message: str) -> None:
    violations = validate_record({"type": "t", "data": data}, 4, "records[4].")
    assert any(
        v.field.startswith(f"records[4].{field}") and message in v.message and v.index == 4
        for v in violations
    ), violations


def test_boundaries_that_are_still_storable() -> None:
    for data in (
        {"k" * MAX_NAME_BYTES: 1},
        {"n": 10**40},  # one significant digit
        {"n": 12345678901234567890123456789012345678},
        {"n": 9.9e125, "m": -1e-130, "z": 0, "f": -0.0},
        {"s": "", "e": [], "o": {}, "u": "\U0001f600\u0000\uffff"},
    ):
        assert validate_record({"type": "t", "data": data}) == [], data
    # The size limit is measured as DynamoDB does (UTF-8 bytes, names, overheads), not in characters.
    just_fits = {"s": "x" * (MAX_DATA_BYTES - dynamodb_size({"s": ""}))}
    assert (
        dynamodb_size(just_fits) == MAX_DATA_BYTES and validate_record({"type": "t", "data": just_fits}) == []
    )
    two_byte_chars = {"s": "é" * (MAX_DATA_BYTES // 2)}
    assert validate_record({"type": "t", "data": two_byte_chars})  # fewer characters, too many bytes


def test_problems_per_record_are_bounded() -> None:
    data = {f"k{n}": "\ud800" for n in range(1000)}
    assert len(validate_record({"type": "t", "data": data})) == MAX_PROBLEMS_PER_RECORD
    _, violations = validate_request({"records": [{"type": "t", "data": data}] * 3}, 10)
    assert len(violations) == 3 * MAX_PROBLEMS_PER_RECORD and {v.index for v in violations} == {0, 1, 2}


def test_item_problems_cover_keys_size_and_types() -> None:
    assert item_problems({"pk": "x" * 2049}, KEY_LIMITS) == [
        "pk is 2049 bytes; a key attribute holds 1 to 2048"
    ]
    assert item_problems({"pk": "k", "big": "x" * MAX_ITEM_BYTES}, {})[0].startswith("the item is")
    assert item_problems({"pk": "k", "b": b"bytes", "s": {1, 2}}, {}) == [
        "b is a bytes, not a JSON value",
        "s is a set, not a JSON value",
    ]


@settings(max_examples=examples(400), suppress_health_check=[HealthCheck.too_slow])
@given(st.integers() | st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_the_door_accepts_are_numbers_boto3_writes_and_reads_back(number: int | float) -> None:
    problem, _ = number_problem(number)
    if problem is None:
        stored = deserialize(serialize({"n": number}))["n"]
        # Integers exactly; a float as the same double (5.9e16 may read back as the int 59...070, which
        # every JSON reader parses to that same double).
        assert stored == number if isinstance(number, int) else float(stored) == number
    else:
        assert "significant digits" in problem or "too large" in problem or "too small" in problem


@settings(
    max_examples=examples(150), suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(records)
def test_a_record_the_door_accepts_the_default_transform_can_store(record: dict[str, Any]) -> None:
    """The door's rules imply the processor's: an accepted record's stored item is valid for DynamoDB."""
    if validate_record(record):
        return
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    context = TransformContext("r" * 128, "B" * 26, "c", now - timedelta(seconds=1), now)
    try:
        result = transform(record, context)
    except Exception as error:  # only RejectRecord is allowed out of the default transform
        assert type(error).__name__ == "RejectRecord", error
        return
    outcome = Outcome("r" * 128, PROCESSED, result["type"], result=result)
    item = PipelineTable.record_item("B" * 26, outcome, now, now)
    assert item_problems(item, KEY_LIMITS) == []
    assert _same(result, deserialize(serialize(item))["r"])


@settings(max_examples=examples(200), suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=5))
def test_storable_data_reads_back_unchanged(data: dict[str, Any]) -> None:
    if validate_record({"type": "t", "data": data}):
        return
    assert _same(data, deserialize(serialize({"data": data}))["data"])


def _same(data: Any, back: Any) -> bool:
    """Equal as JSON readers see it: numbers compared as doubles when either side is a float."""

    def equal(a: Any, b: Any) -> bool:
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
        if isinstance(a, float) or isinstance(b, float):
            return not isinstance(a, bool | str | None) and float(a) == float(b)
        return bool(a == b) and type(a) is type(b)

    return equal(data, back)
