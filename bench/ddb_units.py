"""DynamoDB item sizes and request units, computed from items in DynamoDB's wire format ({"S": ...}).

The rules, from the DynamoDB Developer Guide:

- Item size: the sum of the UTF-8 lengths of attribute names and values. A string is its UTF-8 bytes; a
  number is about 1 byte per two significant digits (leading and trailing zeros trimmed) plus 1; binary
  is its raw length; null and Boolean are 1 byte; a list or map is 3 bytes plus its elements, and each
  element costs 1 more byte. "DynamoDB item sizes and formats":
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html
  (sets are not spelled out there: they are counted as the sum of their elements here).
- Writes: item size rounded up to 1 KB per unit (minimum 1); PutItem and UpdateItem are charged on the
  larger of the item before and after, DeleteItem on the deleted item; a conditional write that fails
  still consumes units (the existing item's size, or 1 if there is none). Reads: 4 KB per unit, half for
  eventually consistent reads; reading a missing item still costs 1 (or 0.5); BatchGetItem rounds each
  item, Query rounds the total. "DynamoDB read and write operations" (read/write capacity unit
  consumption): https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html
  and https://github.com/awsdocs/amazon-dynamodb-developer-guide/blob/master/doc_source/CapacityUnitCalculations.md
- Transactions: "DynamoDB performs two underlying reads or writes of every item in the transaction", so
  every action of TransactWriteItems, ConditionCheck included, costs twice its standard units ("Capacity
  management for transactions"):
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-capacity-handling
  Changes made by a transaction reach global secondary indexes after it completes (same page), so index
  writes are charged at the standard rate, not doubled.
- Global secondary indexes: every index the item is in before or after the write costs its own write of
  the index entry (table key + index key + projected attributes), rounded up per 1 KB: one write to add
  or remove an entry, two when an index key value changes, one when a projected attribute changes, none
  otherwise. "Provisioned throughput considerations for global secondary indexes":
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.ThroughputConsiderations.Writes

This module only computes; bench/cost.py feeds it the items a real request touched (read from moto
before and after the call), so UpdateItem is charged on the real larger of before and after.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
CONTAINER_OVERHEAD = 3  # a list or map, whatever it holds
ELEMENT_OVERHEAD = 1  # each element of a list or map
STORAGE_OVERHEAD = 100  # per item (and per index entry), for storage billing only


def number_size(text: str) -> int:
    """Bytes of a DynamoDB number: ceil(significant digits / 2) + 1."""
    try:
        value = Decimal(text)
    except InvalidOperation as error:
        raise ValueError(f"not a DynamoDB number: {text!r}") from error
    if not value.is_finite():
        raise ValueError(f"not a DynamoDB number: {text!r}")
    digits = "".join(str(d) for d in value.as_tuple().digits).strip("0")
    return math.ceil(len(digits) / 2) + 1


def _binary_length(value: Any) -> int:
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, str):  # the wire format is base64; the raw length counts
        return len(base64.b64decode(value))
    raise ValueError(f"not a DynamoDB binary value: {value!r}")


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one attribute value in DynamoDB's wire format (without its name)."""
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ValueError(f"not a DynamoDB attribute value: {value!r}")
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode("utf-8"))
    if kind == "N":
        return number_size(str(data))
    if kind == "B":
        return _binary_length(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode("utf-8")) for s in data)
    if kind == "NS":
        return sum(number_size(str(n)) for n in data)
    if kind == "BS":
        return sum(_binary_length(b) for b in data)
    if kind == "L":
        return CONTAINER_OVERHEAD + sum(value_size(v) + ELEMENT_OVERHEAD for v in data)
    if kind == "M":
        return CONTAINER_OVERHEAD + sum(
            len(name.encode("utf-8")) + value_size(v) + ELEMENT_OVERHEAD for name, v in data.items()
        )
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """Bytes of an item: every attribute's name plus its value."""
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def write_units(size: int, transactional: bool = False) -> int:
    units = max(1, math.ceil(size / WRITE_UNIT_BYTES))
    return units * 2 if transactional else units


def read_units(size: int, consistency: str = "eventual") -> float:
    """`consistency`: "eventual", "strong" or "transactional". A missing item is size 0 (still 1 unit)."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return {"eventual": units / 2, "strong": float(units), "transactional": units * 2.0}[consistency]


@dataclass(frozen=True)
class Index:
    name: str
    keys: tuple[str, ...]  # index partition (and sort) key attribute names
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    non_key_attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    name: str
    keys: tuple[str, ...]
    indexes: tuple[Index, ...] = ()

    @classmethod
    def from_description(cls, description: Mapping[str, Any]) -> Table:
        """From DescribeTable's `Table` (or a template's table properties, which share the shape)."""
        indexes = tuple(
            Index(
                name=gsi["IndexName"],
                keys=tuple(k["AttributeName"] for k in gsi["KeySchema"]),
                projection=gsi.get("Projection", {}).get("ProjectionType", "ALL"),
                non_key_attributes=tuple(gsi.get("Projection", {}).get("NonKeyAttributes", ())),
            )
            for gsi in description.get("GlobalSecondaryIndexes", [])
        )
        return cls(
            name=str(description.get("TableName", "")),
            keys=tuple(k["AttributeName"] for k in description["KeySchema"]),
            indexes=indexes,
        )

    def key_of(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {name: item[name] for name in self.keys}

    def index_entry(self, index: Index, item: Mapping[str, Any]) -> dict[str, Any] | None:
        """The entry `item` has in `index`, or None when the item lacks an index key (sparse index)."""
        if not all(name in item for name in index.keys):
            return None
        if index.projection == "ALL":
            return dict(item)
        names = set(self.keys) | set(index.keys)
        if index.projection == "INCLUDE":
            names |= set(index.non_key_attributes)
        return {name: value for name, value in item.items() if name in names}


@dataclass
class Charge:
    """Units one write or read consumed, by what they were spent on."""

    kind: str  # what the item is (its key's prefix, e.g. "REC"), for "where the units go"
    purpose: str  # "table" | "index <name>" | "read"
    units: float
    item_bytes: int = 0


@dataclass
class Meter:
    """Adds up the units of every DynamoDB call it is shown, by item kind and purpose."""

    charges: list[Charge] = field(default_factory=list)

    @property
    def write_units(self) -> float:
        return sum(c.units for c in self.charges if c.purpose != "read")

    @property
    def read_units(self) -> float:
        return sum(c.units for c in self.charges if c.purpose == "read")

    def by(self) -> dict[tuple[str, str], float]:
        totals: dict[tuple[str, str], float] = {}
        for charge in self.charges:
            totals[(charge.kind, charge.purpose)] = (
                totals.get((charge.kind, charge.purpose), 0) + charge.units
            )
        return totals


def item_kind(table: Table, item: Mapping[str, Any] | None, key: Mapping[str, Any]) -> str:
    """A label for the item: the prefix of its partition key before '#' (REC, BATCH...), else "item"."""
    source = item or key
    value = source.get(table.keys[0], {})
    text = str(value.get("S", "")) if isinstance(value, Mapping) else ""
    return text.split("#", 1)[0] if "#" in text else "item"


def write_charges(
    table: Table,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    *,
    key: Mapping[str, Any],
    transactional: bool = False,
    succeeded: bool = True,
    condition_check: bool = False,
) -> list[Charge]:
    """Units of one item write: the item itself, then every index entry it adds, changes or removes.

    `before`/`after`: the item as stored before and after the call (None: absent). A failed conditional
    write (or a ConditionCheck) is charged on the existing item's size, 1 unit if none, and touches no
    index."""
    kind = item_kind(table, after or before, key)
    if condition_check or not succeeded:
        size = item_size(before) if before else 0
        return [Charge(kind, "table", write_units(size, transactional), size)]
    size = max(item_size(before) if before else 0, item_size(after) if after else 0)
    charges = [Charge(kind, "table", write_units(size, transactional), size)]
    for index in table.indexes:
        old = table.index_entry(index, before) if before else None
        new = table.index_entry(index, after) if after else None
        entries: list[dict[str, Any]] = []
        if old is None and new is not None:
            entries = [new]
        elif old is not None and new is None:
            entries = [old]
        elif old is not None and new is not None:
            if any(old.get(name) != new.get(name) for name in index.keys):
                entries = [old, new]  # delete the old entry, put the new one
            elif old != new:
                entries = [new]  # a projected attribute changed
        for entry in entries:
            entry_size = item_size(entry)
            charges.append(Charge(kind, f"index {index.name}", write_units(entry_size), entry_size))
    return charges


def read_charge(
    table: Table, item: Mapping[str, Any] | None, key: Mapping[str, Any], consistency: str
) -> Charge:
    size = item_size(item) if item else 0
    return Charge(item_kind(table, item, key), "read", read_units(size, consistency), size)
