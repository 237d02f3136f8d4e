"""The DynamoDB size and unit counter behind `make bench` (bench/ddb_units.py), on items whose sizes are
computed by hand from "DynamoDB item sizes and formats" and on the worked examples of the Developer Guide
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html,
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html,
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html). Fast: no Node,
no moto."""

from __future__ import annotations

import base64
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import ddb_units
from bench.ddb_units import Index, Table, item_size, number_size, read_units, value_size, write_units
from tests.tiers import examples

# --- item sizes, by hand ---------------------------------------------------------------------------------
# 8+4, 2+7, 8+11, 8+17, 10+4, 9+16, 9+16 (strings: name + UTF-8 bytes) and 9 + (4 digits -> 2 + 1) = 141.
SLOT = {
    "itemType": {"S": "SLOT"},
    "id": {"S": "abc1231"},
    "hostName": {"S": "Harry Mason"},
    "timeSlot": {"S": "February 23, 1999"},
    "slotStatus": {"S": "OPEN"},
    "createdAt": {"S": "February 1, 1999"},
    "updatedAt": {"S": "February 1, 1999"},
    "expiresAt": {"N": "2099"},
}
# "m" (1) + map: 3 + ["a" 1 + number "1" (1 digit -> 1 + 1) + 1 element byte = 4]
#   + ["bb" 2 + list(3 + ("xy" 2 + 1) + (true 1 + 1)) = 2 + 8 + 1 element byte = 11] = 18 -> 19.
NESTED = {"m": {"M": {"a": {"N": "1"}, "bb": {"L": [{"S": "xy"}, {"BOOL": True}]}}}}
# Names and values count UTF-8 bytes: "名前" is 6 bytes, "é" is 2 -> 8.
UNICODE = {"名前": {"S": "é"}}
# Binary counts raw bytes, whether given as bytes or as the wire format's base64: 1 + 3 each; null is 1.
BINARY = {"b": {"B": b"\x00\x01\x02"}, "c": {"B": base64.b64encode(b"xyz").decode()}, "n": {"NULL": True}}
# An empty list or map is its 3 bytes of overhead: 2 + 3, 2 + 3.
EMPTY: dict[str, Any] = {"ls": {"L": []}, "mp": {"M": {}}}


@pytest.mark.parametrize(
    ("item", "size"),
    [(SLOT, 141), (NESTED, 19), (UNICODE, 8), (BINARY, 4 + 4 + 2), (EMPTY, 10)],
    ids=["strings-and-number", "nested-map-and-list", "utf8", "binary-and-null", "empty-containers"],
)
def test_item_sizes_match_hand_computed_sizes(item: dict[str, Any], size: int) -> None:
    assert item_size(item) == size


@pytest.mark.parametrize(
    ("number", "size"),
    [
        ("2099", 3),
        ("123.4500", 4),
        ("-0.00012", 2),
        ("1000", 2),
        ("0", 1),
        ("1E+3", 2),
        ("12345678901234567890", 11),
    ],
)
def test_numbers_cost_a_byte_per_two_significant_digits_plus_one(number: str, size: int) -> None:
    """Leading and trailing zeros are trimmed; sign, point and exponent are not digits."""
    assert number_size(number) == size


def test_sets_count_their_elements() -> None:
    assert value_size({"SS": ["ab", "cde"]}) == 5
    assert value_size({"NS": ["1", "22", "333"]}) == 2 + 2 + 3
    assert value_size({"BS": [b"ab", b"c"]}) == 3


# --- units, from the Developer Guide's worked examples ------------------------------------------------
def test_write_units_round_each_item_up_to_1_kb() -> None:
    assert write_units(1) == 1
    assert write_units(1024) == 1
    assert write_units(1025) == 2
    assert write_units(int(1.6 * 1024)) == 2  # "put or delete an item of 1.6 KB ... rounds up to 2 KB"
    # "BatchWriteItem writes a 500 byte item and a 3.5 KB item ... 5 KB (1 KB + 4 KB)"
    assert write_units(500) + write_units(int(3.5 * 1024)) == 5


def test_transactional_writes_cost_double() -> None:
    # "each transaction writes three 500-byte items ... you would need to provision six WCUs"
    assert sum(write_units(500, transactional=True) for _ in range(3)) == 6
    assert write_units(3 * 1024, transactional=True) == 6  # "a transactional write ... of a 3 KB item: six"


def test_read_units_round_to_4_kb_and_halve_for_eventual_consistency() -> None:
    assert read_units(int(3.5 * 1024), "strong") == 1  # "3.5 KB ... rounds the item size to 4 KB"
    assert read_units(10 * 1024, "strong") == 3  # "10 KB ... rounds the item size to 12 KB"
    assert read_units(8 * 1024, "eventual") == 1  # "an eventually consistent read of an 8 KB item: one"
    assert read_units(8 * 1024, "transactional") == 4  # "a transactional read of an 8 KB item: four"
    # "BatchGetItem reads a 1.5 KB item and a 6.5 KB item ... 12 KB (4 KB + 8 KB)"
    assert read_units(int(1.5 * 1024), "strong") + read_units(int(6.5 * 1024), "strong") == 3
    # "a query returns 10 items whose combined size is 40.8 KB ... rounds ... to 44 KB"
    assert read_units(int(40.8 * 1024), "strong") == 11
    assert read_units(0, "strong") == 1 and read_units(0, "eventual") == 0.5  # a missing item still costs


# --- what one write costs, indexes included ---------------------------------------------------------------
TABLE = Table(
    "t",
    ("pk",),
    (
        Index("by-type", ("gsi1pk", "gsi1sk"), "KEYS_ONLY"),
        Index("everything", ("owner",), "ALL"),
    ),
)


def _item(size_of_data: int, **extra: str) -> dict[str, Any]:
    item: dict[str, Any] = {"pk": {"S": "REC#1"}, "data": {"S": "x" * size_of_data}}
    item.update({name: {"S": value} for name, value in extra.items()})
    return item


def _units(charges: list[ddb_units.Charge], purpose: str | None = None) -> float:
    return sum(c.units for c in charges if purpose is None or c.purpose == purpose)


def test_a_new_item_costs_its_size_and_one_write_per_index_it_enters() -> None:
    item = _item(2000, gsi1pk="order#PROCESSED", gsi1sk="2024#1")  # 2 + 5 + 4 + 2000 + ... > 1 KB: 2 units
    charges = ddb_units.write_charges(TABLE, None, item, key={"pk": item["pk"]})
    assert _units(charges, "table") == 2
    assert _units(charges, "index by-type") == 1  # a small KEYS_ONLY entry
    assert _units(charges, "index everything") == 0  # no `owner`: not in that (sparse) index
    assert {c.kind for c in charges} == {"REC"}


def test_update_is_charged_on_the_larger_of_before_and_after() -> None:
    small, large = _item(100), _item(3000)
    assert _units(ddb_units.write_charges(TABLE, large, small, key={"pk": small["pk"]}), "table") == 3
    assert _units(ddb_units.write_charges(TABLE, small, large, key={"pk": small["pk"]}), "table") == 3


def test_index_writes_follow_the_developer_guide() -> None:
    key = {"pk": {"S": "REC#1"}}
    before = _item(10, gsi1pk="a", gsi1sk="1", owner="o")
    moved = _item(10, gsi1pk="b", gsi1sk="1", owner="o")  # index key changes: delete + put
    assert _units(ddb_units.write_charges(TABLE, before, moved, key=key), "index by-type") == 2
    projected = _item(20, gsi1pk="a", gsi1sk="1", owner="o")  # a non-key attribute changes
    charges = ddb_units.write_charges(TABLE, before, projected, key=key)
    assert _units(charges, "index by-type") == 0  # KEYS_ONLY: nothing it holds changed
    assert _units(charges, "index everything") == 1  # ALL: the projection changed
    gone = _item(10)  # the index keys are removed: one write to delete each entry
    assert _units(ddb_units.write_charges(TABLE, before, gone, key=key), "index by-type") == 1
    assert _units(ddb_units.write_charges(TABLE, before, None, key=key), "index") == 0  # (purpose is exact)
    deleted = ddb_units.write_charges(TABLE, before, None, key=key)
    assert _units(deleted, "index by-type") == 1 and _units(deleted, "index everything") == 1


def test_failed_conditions_and_condition_checks_cost_the_existing_item_and_touch_no_index() -> None:
    key = {"pk": {"S": "REC#1"}}
    existing = _item(2500, gsi1pk="a", gsi1sk="1")
    failed = ddb_units.write_charges(TABLE, existing, existing, key=key, succeeded=False)
    assert _units(failed) == 3 and _units(failed, "table") == 3
    assert _units(ddb_units.write_charges(TABLE, None, None, key=key, succeeded=False)) == 1  # no item: 1
    check = ddb_units.write_charges(
        TABLE, existing, existing, key=key, transactional=True, condition_check=True
    )
    assert _units(check) == 6  # both phases of the transaction


def test_transactions_double_the_item_but_not_its_index_entries() -> None:
    item = _item(500, gsi1pk="a", gsi1sk="1")
    charges = ddb_units.write_charges(TABLE, None, item, key={"pk": item["pk"]}, transactional=True)
    assert _units(charges, "table") == 2
    assert _units(charges, "index by-type") == 1


def test_table_from_describe_table_reads_keys_and_projections() -> None:
    table = Table.from_description(
        {
            "TableName": "t",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "i",
                    "KeySchema": [{"AttributeName": "x", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["y"]},
                }
            ],
        }
    )
    entry = table.index_entry(
        table.indexes[0], {"pk": {"S": "p"}, "x": {"S": "1"}, "y": {"S": "2"}, "z": {"S": "3"}}
    )
    assert entry == {"pk": {"S": "p"}, "x": {"S": "1"}, "y": {"S": "2"}}


# --- negative: the counter refuses what is not DynamoDB data, and the expectations catch a wrong counter --
@pytest.mark.parametrize(
    "value",
    [{"X": "1"}, {"S": "a", "N": "1"}, {"N": "abc"}, {"N": "NaN"}, "plain", {"B": 12}],
    ids=["unknown-type", "two-types", "not-a-number", "nan", "not-a-map", "bad-binary"],
)
def test_values_that_are_not_dynamodb_values_are_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        value_size(value)


def test_a_counter_that_forgets_the_per_element_byte_fails_the_hand_computed_sizes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ddb_units, "ELEMENT_OVERHEAD", 0)
    assert item_size(NESTED) != 19  # the expectation above would fail for this counter
    monkeypatch.setattr(ddb_units, "ELEMENT_OVERHEAD", 1)
    monkeypatch.setattr(ddb_units, "CONTAINER_OVERHEAD", 0)
    assert item_size(EMPTY) != 10


def test_a_counter_that_counts_characters_instead_of_utf8_bytes_would_be_caught() -> None:
    characters = sum(len(name) + len(value["S"]) for name, value in UNICODE.items())
    assert characters != item_size(UNICODE) == 8


# --- properties -----------------------------------------------------------------------------------------
_scalars = st.one_of(
    st.text(max_size=40).map(lambda s: {"S": s}),
    st.integers(min_value=-(10**30), max_value=10**30).map(lambda n: {"N": str(n)}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.binary(max_size=40).map(lambda b: {"B": b}),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: {"L": items}),
        st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4).map(lambda m: {"M": m}),
    ),
    max_leaves=12,
)
_items = st.dictionaries(st.text(min_size=1, max_size=12), _values, min_size=1, max_size=6)


@settings(max_examples=examples(50))
@given(_items, st.text(min_size=1, max_size=12), _values)
def test_adding_an_attribute_adds_exactly_its_name_and_value(
    item: dict[str, Any], name: str, value: Any
) -> None:
    item.pop(name, None)
    assert item_size({**item, name: value}) == item_size(item) + len(name.encode()) + value_size(value)


@given(st.integers(min_value=0, max_value=400 * 1024), st.booleans())
def test_write_units_are_the_ceiling_of_kilobytes(size: int, transactional: bool) -> None:
    units = write_units(size, transactional)
    assert units == max(1, math.ceil(size / 1024)) * (2 if transactional else 1)
    assert write_units(size + 1024, transactional) > units or size == 0
