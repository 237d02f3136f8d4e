"""The validator's fast paths (bench/handler_speed.py measures why they exist) agree with the exact checks
they stand in for, on generated inputs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rtp_pipeline.ingest import new_batch_id, reserved_ids
from rtp_pipeline.storage import owned_by
from rtp_pipeline.validation import (
    JsonDocumentError,
    _plain_number_digits,
    json_depth,
    number_problem,
    parse_json_document,
    value_depth,
)

from tests.tiers import examples

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=examples(300))
@given(JSON)
def test_the_depth_of_a_parsed_value_is_the_depth_of_its_text(value: Any) -> None:
    assert value_depth(value) == json_depth(json.dumps(value))


@pytest.mark.parametrize("text", ["[" * 65 + "]" * 65, "[" * 100_000, '{"a":' * 70 + "1" + "}" * 70])
def test_too_deep_is_refused_as_too_deep_whether_or_not_it_parses(text: str) -> None:
    with pytest.raises(JsonDocumentError, match="levels deep; at most 64"):
        parse_json_document(text)


@settings(max_examples=examples(2000))
@given(
    st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
)
def test_a_number_taken_as_plain_is_one_the_exact_check_accepts_with_the_same_digits(value: Any) -> None:
    digits = _plain_number_digits(value)
    if digits is not None:
        assert number_problem(value) == (None, digits)


def test_numbers_near_dynamodbs_limits_take_the_exact_check() -> None:
    for value in (10**38, -(10**38), 1e125, 1e-131, 9.99e125):
        assert _plain_number_digits(value) is None


# Client ids as the record schema allows them (record.schema.json: id pattern, at most 128 characters).
CLIENT_IDS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")


@settings(max_examples=examples(500))
@given(CLIENT_IDS | st.builds(lambda n: f"{new_batch_id()}-{n}", st.integers(min_value=0, max_value=10**6)))
def test_no_client_id_ingest_accepts_can_be_one_a_batch_owns(record_id: str) -> None:
    """Storage writes the ids a batch owns without a condition (storage.owned_by): ingest must refuse
    every client id that some batch could own, or a client could overwrite another batch's record."""
    owned_by_someone = owned_by(record_id, record_id[:26])
    refused = bool(reserved_ids([{"id": record_id, "type": "t", "data": {}}]))
    assert not owned_by_someone or refused
