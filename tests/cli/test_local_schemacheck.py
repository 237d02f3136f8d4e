"""The local API's fast request-body check (rtp_cli/local/schemacheck.py) agrees with jsonschema's
Draft4Validator on every document: it may only ever skip jsonschema for bodies jsonschema accepts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator  # type: ignore[import-untyped]

from rtp_cli.local.gateway import _schema_errors
from rtp_cli.local.schemacheck import compile_schema
from stack.request_model import load_record_schema, request_schema
from tests.handlers.fuzz import from_record_schema
from tests.tiers import examples

_RECORD: dict[str, Any] = load_record_schema()


SCHEMA = request_schema(_RECORD, 500)
SMALL = request_schema(_RECORD, 3)  # maxItems reachable by generated documents
CHECK = compile_schema(SCHEMA)
SMALL_CHECK = compile_schema(SMALL)


def test_the_local_template_s_model_is_this_schema(cached_templates: Any) -> None:
    resources = cached_templates["local"]["Resources"].values()
    models = [r["Properties"]["Schema"] for r in resources if r["Type"] == "AWS::ApiGateway::Model"]
    assert models and all(model == SCHEMA for model in models)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_field_values = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", "a", "reading", "-bad", "x" * 65, "x" * 129, "2026-11-29T04:00:00Z", "2026-11-29"]),
    _json,
)
_records = st.fixed_dictionaries(
    {},
    optional={
        "id": _field_values,
        "type": _field_values,
        "data": _json,
        "timestamp": _field_values,
        "source": _field_values,
        "other": _json,
    },
)


def _agree(schema: dict[str, Any], check: Any, document: Any) -> None:
    assert check is not None
    assert check(document) == Draft4Validator(schema).is_valid(document)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=st.one_of(
        from_record_schema(_RECORD),
        st.builds(
            lambda r: {"records": r},
            st.lists(from_record_schema(_RECORD), min_size=1, max_size=3),
        ),
    )
)
def test_documents_the_schema_accepts_are_accepted(document: Any) -> None:
    _agree(SMALL, SMALL_CHECK, document)
    assert SMALL_CHECK is not None and SMALL_CHECK(document)  # the fast path is taken for them


@settings(max_examples=examples(150), deadline=None)
@given(
    document=st.one_of(
        _json,
        _records,
        st.builds(lambda records: {"records": records}, st.lists(_records, max_size=5)),
        st.builds(
            lambda records, extra: {"records": records, **extra},
            st.lists(_records, max_size=2),
            _json.filter(lambda v: isinstance(v, dict)),
        ),
    )
)
def test_any_document_gets_jsonschema_s_verdict(document: Any) -> None:
    _agree(SMALL, SMALL_CHECK, document)
    _agree(SCHEMA, CHECK, document)


_BOUNDARY_STRINGS = [
    "",
    "a",
    "-starts-badly",
    "has space",
    "2026-11-29T04:00:00Z",
    "2026-11-29 04:00:00.5+01:00",
    "2026-11-29",
    *("x" * n for n in (39, 40, 41, 63, 64, 65, 127, 128, 129)),
]


@st.composite
def _one_change(draw: st.DrawFn) -> Any:
    """A valid request with one field changed to a value at or just past one of the schema's limits."""
    records = draw(st.lists(from_record_schema(_RECORD), min_size=1, max_size=3))
    target = records[draw(st.integers(0, len(records) - 1))]
    field = draw(st.sampled_from([*_RECORD["properties"], "unknown"]))
    change = draw(st.sampled_from(["set", "drop", "wrong type"]))
    if change == "drop":
        target.pop(field, None)
    elif change == "wrong type":
        target[field] = draw(st.sampled_from([1, None, True, [], {}, "text"]))
    else:
        target[field] = draw(st.sampled_from(_BOUNDARY_STRINGS)) if field != "data" else {}
    wrapped = {"records": records}
    return draw(st.sampled_from([wrapped, target, {**wrapped, "extra": 1}, {"records": records * 2}]))


@settings(max_examples=examples(200), deadline=None)
@given(document=_one_change())
def test_documents_at_the_schema_s_limits_get_jsonschema_s_verdict(document: Any) -> None:
    _agree(SMALL, SMALL_CHECK, document)
    _agree(SCHEMA, CHECK, document)


def test_one_of_means_exactly_one() -> None:
    overlapping = {"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 3}]}
    check = compile_schema(overlapping)
    for document in ("ab", "abcd", 1):
        _agree(overlapping, check, document)


def test_a_schema_with_other_keywords_is_left_to_jsonschema() -> None:
    assert compile_schema({"type": "object", "patternProperties": {"^x": {}}}) is None
    assert compile_schema({"type": "integer"}) is None
    assert compile_schema({"items": [{"type": "string"}]}) is None
    assert compile_schema({"type": "object", "properties": {"a": {"format": "date-time"}}}) is None


@pytest.mark.parametrize(
    "body",
    [
        {"records": [{"type": "reading", "data": {}}, {"type": "", "data": {}}]},
        {"records": []},
        {"type": "reading"},
        {"records": [{"type": "reading", "data": {}}], "extra": 1},
    ],
)
def test_refused_bodies_keep_jsonschema_s_messages(body: dict[str, Any]) -> None:
    errors = _schema_errors(SCHEMA, json.dumps(body).encode())
    expected = sorted(Draft4Validator(SCHEMA).iter_errors(body), key=lambda e: list(e.absolute_path))
    assert errors and len(errors) == len(expected[:10])
    assert _schema_errors(SCHEMA, json.dumps({"records": [{"type": "a", "data": {}}]}).encode()) == []


def test_a_schema_the_compiler_cannot_read_is_left_to_jsonschema() -> None:
    """An ECMA-262-only pattern (Python's re has no \\p{L}) or a malformed keyword: no compiled check, so
    every request is validated by jsonschema alone, as before the compiler existed (not a 500)."""
    assert (
        compile_schema({"type": "object", "properties": {"n": {"type": "string", "pattern": "\\p{L}"}}})
        is None
    )
    assert compile_schema({"type": "object", "properties": []}) is None
