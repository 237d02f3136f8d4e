"""Request and record validation: one notion of "valid", shared by ingest, the processor and `rtp send`.

A record is valid when it matches `record.schema.json` AND the pipeline can store it and read it back.

The schema file is the single source of truth for the shape: the stack turns it into the API Gateway
request model, and this module checks the same rules inside the function (API Gateway validates only JSON
bodies it can match to a model, and the processor re-checks what it reads back from S3). The interpreter
below covers exactly the JSON Schema draft-04 keywords the schema uses, with ECMA-262 regular expression
semantics (what JSON Schema specifies): `\\d` is [0-9] and `$` is the end of the input. Python's `re`
differs on both (`\\d` matches any Unicode digit, `$` matches before a final newline), so patterns are
translated (`_pattern`). `SUPPORTED_KEYWORDS` is checked by a test so that a keyword added to the schema
cannot be silently ignored here.

What a draft-04 model cannot express is checked here, in the function, for every caller
(`validate_record`/`validate_request`, which `rtp send` also uses):

- the timestamp is a real instant (calendar dates, hours 00-23, offsets up to 23:59, years 0001-9999
  also once converted to UTC), not only the pattern;
- every string and object key is valid Unicode (JSON's `\\ud800` escape decodes to a lone surrogate,
  which cannot be encoded as UTF-8, the encoding DynamoDB stores);
- `data` fits DynamoDB's document rules as the processor stores it (`result.data`): nesting, map keys,
  numbers and the 400 KB item size (see the constants below for the documentation of each rule).

`parse_json_document` is the strict body parser: bounded nesting (checked before parsing, without
recursion), no NaN/Infinity, no number beyond a double's range, no lone surrogates.

Why hand-written, not jsonschema or fastjsonschema (`tests/handlers/test_validator_differential.py` runs
it against jsonschema's Draft4Validator on generated records: they agree on the schema's rules, valid or
not and which fields, except where this module is stricter, as listed above and for `$`):

- every violation of a record, each with the field the API and `rtp send` report (fastjsonschema stops
  at the first; jsonschema lists them all, but slower, below);
- ECMA-262 pattern semantics: both libraries use Python's `re`, so their `$` accepts "abc\n";
- no third-party dependency in the Lambda asset (the runtime has the standard library, boto3 and the
  Powertools layer), and `rtp send` imports this module as it is (the package is installed with rtp);
- speed, measured with `python -m bench validator` (2,000 records, median of 7 runs, 2026-11-29, two
  cores, nothing else running): on valid records the schema's rules take 3.7 us per record here (the
  schema is compiled into closures once, `_compile`), 41 us in jsonschema listing all errors (11x) and
  41 us in its `is_valid`; fastjsonschema takes 2.5 us (1.5x faster, first error only). On records with
  three violations: 4.8 us here, 69 us in jsonschema listing them all (14x), 2.9 us in fastjsonschema.
  The whole check, with the rules beyond the schema (it walks all of `data` for DynamoDB's), takes 17 us.
  So speed rules out jsonschema; against fastjsonschema the reasons are all violations per record,
  ECMA-262 semantics and no dependency.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from itertools import accumulate
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("record.schema.json")

SUPPORTED_KEYWORDS = frozenset(
    {
        "$schema",
        "title",
        "description",
        "type",
        "required",
        "additionalProperties",
        "properties",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "items",
    }
)

# --- limits ---------------------------------------------------------------------------------------
# A request body may nest arrays and objects at most this deep. Checked before parsing, so a body nested
# thousands deep is a 400, never a RecursionError (Python's json parser recurses once per level). It is
# above what a storable record needs: the body, `records`, the record and `data` are 4 levels, and data
# may nest 30 more (MAX_NESTING_LEVELS below).
MAX_JSON_DEPTH = 64

# DynamoDB documents nest at most 32 levels, counting the top-level attribute's value as level 1:
# "Nested attribute depth: DynamoDB supports nested attributes up to 32 levels deep."
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html#limits-attributes
# How the levels count (a value 32 levels down is refused; 31 map wraps around a scalar are accepted,
# 32 refused) was captured against DynamoDB by the dynoxide emulator:
# https://docs.rs/crate/dynoxide-rs/3.0.0/source/tests/nesting_depth.rs
MAX_NESTING_LEVELS = 32
# The processor stores a record's `data` as `result.data`: `result` is level 1, `data` level 2.
DATA_LEVEL = 2

# "The maximum item size in DynamoDB is 400 KB, which includes both attribute name binary length (UTF-8
# length) and attribute value lengths (again binary length)."
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html#limits-items
# Read as 400,000 bytes, the lower reading of "400 KB": moto (the local environment) refuses items above
# 405,000 bytes, so an item this module accepts is stored by both.
MAX_ITEM_BYTES = 400_000
# Room left in the item for what the processor adds around `data`: the keys and bookkeeping attributes
# (ids of at most 128 characters, status, times, GSI keys: about 700 bytes) and the default transform's
# enrichment (type, source, four timestamps, latency, content hash: about 500 bytes), with margin.
ITEM_RESERVE_BYTES = 4 * 1024
MAX_DATA_BYTES = MAX_ITEM_BYTES - ITEM_RESERVE_BYTES

# "Attribute names must be at least one character long and less than 64 KB in size" (map keys are
# attribute names: DynamoDB answers "Empty attribute name" for an empty map key at any depth, captured in
# https://docs.rs/crate/dynoxide-rs/3.0.0/source/src/empty_names.rs).
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html
MAX_NAME_BYTES = 64 * 1024 - 1

# "Numbers can have up to 38 digits of precision ... Positive range: 1E-130 to
# 9.9999999999999999999999999999999999999E+125; Negative range: -9.9999999999999999999999999999999999999E+125
# to -1E-130" (leading and trailing zeroes are trimmed).
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html#HowItWorks.DataTypes.Number
MAX_NUMBER_DIGITS = 38
MIN_NUMBER_EXPONENT = -130  # adjusted exponent (that of the most significant digit)
MAX_NUMBER_EXPONENT = 125

# A record's problems are listed up to this many (a pathological record could have thousands).
MAX_PROBLEMS_PER_RECORD = 10

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


@dataclass(frozen=True)
class Violation:
    """One broken rule: `index` is the record's position in the request (None for the envelope)."""

    field: str
    message: str
    index: int | None = None

    def as_dict(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"field": self.field, "message": self.message}
        if self.index is not None:
            detail["index"] = self.index
        return detail


class JsonDocumentError(ValueError):
    """A document `parse_json_document` refuses. `str(error)` says why, for a person."""


@cache
def record_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


# --- parsing --------------------------------------------------------------------------------------
# A JSON string (the unrolled form: no backtracking, no per-character group) and anything not a bracket.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# The only way a lone surrogate gets into parsed JSON: a \uD800-\uDFFF escape (raw ones are not UTF-8).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_json_document(
    document: str | bytes, *, max_depth: int = MAX_JSON_DEPTH, reject_lone_surrogates: bool = True
) -> Any:
    """Parse JSON strictly: UTF-8 only, at most `max_depth` nested arrays/objects, no NaN or Infinity, no
    number beyond a double's range (1e400) or so small it would silently become 0 (1e-400), and (unless
    `reject_lone_surrogates` is False) no lone UTF-16 surrogate in any string or key.

    Raises JsonDocumentError (a ValueError). The work is linear in the document's length: the depth is
    measured before parsing, without recursion, so no document can make the parser recurse past
    `max_depth`. Numbers are returned as Python's json returns them (int, float)."""
    if isinstance(document, bytes | bytearray):
        try:
            text = bytes(document).decode("utf-8")
        except UnicodeDecodeError as error:
            raise JsonDocumentError(f"not UTF-8: {error}") from None
    else:
        text = document
    # Parsed first (the C parser stops at Python's recursion limit with a RecursionError, it cannot
    # overflow), then measured on the value: scanning the text for brackets costs 9 ms on a 500-record
    # request (python -m bench handler_speed). A text that does not parse is measured as text, so that
    # a deep and broken document is still reported as too deep.
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except JsonDocumentError:
        _refuse_depth(json_depth(text), max_depth)
        raise
    except RecursionError:
        _refuse_depth(json_depth(text), max_depth)
        raise JsonDocumentError(f"nested too deeply (at most {max_depth} levels)") from None
    except ValueError as error:  # JSONDecodeError, and int() beyond Python's digit limit
        _refuse_depth(json_depth(text), max_depth)
        raise JsonDocumentError(f"not valid JSON: {error}") from None
    _refuse_depth(value_depth(value), max_depth)
    if reject_lone_surrogates and _SURROGATE_ESCAPE.search(text):
        for path, text_value in _strings(value, "(document)"):
            if _has_lone_surrogate(text_value):
                raise JsonDocumentError(
                    f"{path} holds a lone UTF-16 surrogate ({_escaped(text_value)[:80]}), which is not "
                    "valid Unicode"
                )
    return value


def _refuse_depth(depth: int, max_depth: int) -> None:
    if depth > max_depth:
        raise JsonDocumentError(
            f"arrays and objects nested {depth} levels deep; at most {max_depth} levels are accepted"
        )


def value_depth(value: Any) -> int:
    """How deep arrays and objects nest in a parsed JSON value (iterative: any depth is safe)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            children: Any = current.values()
        elif isinstance(current, list):
            children = current
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in a JSON text (strings skipped), without parsing it.

    For valid JSON this is exact. For invalid JSON it is exact up to the first syntax error the parser
    would stop at: both scan strings the same way from the left."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets), initial=0))


def _no_constant(name: str) -> Any:
    raise JsonDocumentError(f"{name} is not a JSON number")  # Python's json accepts NaN/Infinity; JSON not


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonDocumentError(f"number {text[:40]} is out of range")
    if value == 0.0 and Decimal(text) != 0:
        raise JsonDocumentError(f"number {text[:40]} is too small to represent (it would become 0)")
    return value


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string and object key in a parsed JSON value, with where it is (iterative: no recursion)."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        current, where = stack.pop()
        if isinstance(current, str):
            yield where, current
        elif isinstance(current, dict):
            for key, item in current.items():
                yield f"{where} key {_escaped(key)[:80]!r}", key
                stack.append((item, _member(where, key)))
        elif isinstance(current, list):
            stack.extend((item, f"{where}[{position}]") for position, item in enumerate(current))


# --- records --------------------------------------------------------------------------------------
def validate_record(record: Any, index: int | None = None, prefix: str = "") -> list[Violation]:
    """Every reason `record` cannot be accepted: its shape (the schema) and what the store cannot hold."""
    problems = _record_check()(record, prefix)
    if isinstance(record, dict):
        problems.extend(_record_problems(record, prefix))
    return [Violation(field, message, index) for field, message in problems]


def extract_records(payload: Any, max_records: int) -> tuple[list[Any], bool, list[Violation]]:
    """Split a request body into records: one record, or `{"records": [...]}`.

    Returns (records, is_batch, envelope violations). Records are not validated here.
    """
    if isinstance(payload, dict) and "records" in payload:
        extra = sorted(set(payload) - {"records"})
        records = payload["records"]
        if extra:
            return [], True, [Violation(_display(extra[0]), "is not allowed next to 'records'")]
        if not isinstance(records, list):
            return [], True, [Violation("records", "must be an array of records")]
        if not records:
            return [], True, [Violation("records", "must contain at least 1 record")]
        if len(records) > max_records:
            return (
                [],
                True,
                [Violation("records", f"has {len(records)} records; at most {max_records} per request")],
            )
        return records, True, []
    if isinstance(payload, dict):
        return [payload], False, []
    return [], False, [Violation("(body)", 'must be a JSON object: one record or {"records": [...]}')]


def validate_request(payload: Any, max_records: int) -> tuple[list[dict[str, Any]], list[Violation]]:
    """Validate a whole request body. Returns its records and every violation found."""
    records, is_batch, violations = extract_records(payload, max_records)
    if violations:
        return [], violations
    for index, record in enumerate(records):
        violations.extend(validate_record(record, index, f"records[{index}]." if is_batch else ""))
    return records, violations


def _record_problems(record: dict[str, Any], prefix: str) -> list[tuple[str, str]]:
    """What the schema cannot say: real timestamps, valid Unicode, and `data` within DynamoDB's rules."""
    problems: list[tuple[str, str]] = []
    for name in ("id", "type", "source", "timestamp"):
        value = record.get(name)
        if isinstance(value, str) and _has_lone_surrogate(value):
            problems.append((f"{prefix}{name}", _SURROGATE_MESSAGE))
    timestamp = record.get("timestamp")
    if isinstance(timestamp, str) and not problems and _pattern(_timestamp_pattern()).search(timestamp):
        reason = timestamp_problem(timestamp)
        if reason:
            problems.append((f"{prefix}timestamp", reason))
    data = record.get("data")
    if isinstance(data, dict):
        found, size = storable_problems(data, f"{prefix}data", DATA_LEVEL)
        problems.extend(found)
        if size > MAX_DATA_BYTES:
            problems.append(
                (
                    f"{prefix}data",
                    f"is {size} bytes as DynamoDB counts them; at most {MAX_DATA_BYTES} bytes fit in one "
                    f"stored record (DynamoDB items hold at most {MAX_ITEM_BYTES} bytes)",
                )
            )
    return problems[:MAX_PROBLEMS_PER_RECORD]


@cache
def _timestamp_pattern() -> str:
    pattern: str = record_schema()["properties"]["timestamp"]["pattern"]
    return pattern


# --- timestamps -----------------------------------------------------------------------------------
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)


def parse_rfc3339(value: str) -> datetime:
    """An RFC 3339 timestamp -> an aware datetime. Raises ValueError for anything that is not a real
    instant Python can hold in UTC (the checks of `timestamp_problem`)."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not an RFC 3339 date-time")
    year, month, day, hour, minute, second = (int(match[group]) for group in range(1, 7))
    fraction = (match[7] or "")[:6].ljust(6, "0")  # microseconds: Python's resolution
    if second == 60:
        raise ValueError("has second 60 (a leap second), which cannot be stored as an instant")
    if year == 0:
        raise ValueError("has year 0000; years 0001 to 9999 are supported")
    if match[8]:
        zone = UTC
    else:
        offset_hours, offset_minutes = int(match[10]), int(match[11])
        if offset_hours > 23 or offset_minutes > 59:
            raise ValueError(f"has offset {match[9]}{match[10]}:{match[11]}; offsets go up to 23:59")
        sign = -1 if match[9] == "-" else 1
        zone = timezone(sign * timedelta(hours=offset_hours, minutes=offset_minutes))
    try:
        moment = datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=zone)
    except ValueError as error:  # month 13, February 30th, hour 24, minute 60...
        raise ValueError(f"is not a real date and time ({error})") from None
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the years 0001 to 9999 once converted to UTC") from None
    return moment


def timestamp_problem(value: str) -> str | None:
    """Why an RFC 3339-shaped timestamp is not a real instant, or None."""
    try:
        parse_rfc3339(value)
    except ValueError as error:
        return str(error)
    return None


# --- what DynamoDB can store ------------------------------------------------------------------------
_SURROGATE_MESSAGE = "holds a lone UTF-16 surrogate (e.g. \\ud800), which is not valid Unicode"


def storable_problems(value: Any, path: str, level: int = 1) -> tuple[list[tuple[str, str]], int]:
    """Whether DynamoDB can store `value` as an attribute value `level` levels deep (an item's attribute
    is level 1), exactly as the processor writes it (`storage.to_dynamo`), and read it back unchanged.

    Returns ((field, message) problems, at most MAX_PROBLEMS_PER_RECORD; the value's size in bytes as
    DynamoDB counts it, without its attribute name; a lower bound once MAX_PROBLEMS_PER_RECORD problems
    stop the walk). Iterative, so any depth is safe to check; a field's path is only spelled out when it
    has a problem."""
    problems: list[tuple[str, str]] = []
    size = 0
    # (value, where, depth): `where` is a path string, or (parent where, key or index) built lazily.
    stack: list[tuple[Any, Any, int]] = [(value, path, level)]
    while stack and len(problems) < MAX_PROBLEMS_PER_RECORD:
        current, where, depth = stack.pop()
        if depth > MAX_NESTING_LEVELS:
            problems.append(
                (
                    _spell(where),
                    f"nests too deep: DynamoDB stores documents at most {MAX_NESTING_LEVELS} levels deep "
                    f"and this value would be level {depth}",
                )
            )
            continue
        # Sizes per https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html
        if isinstance(current, str):
            if current.isascii():  # the common case: nothing to check, one byte a character
                size += len(current)
                continue
            if _has_lone_surrogate(current):
                problems.append((_spell(where), _SURROGATE_MESSAGE))
            size += _utf8_length(current)
        elif isinstance(current, bool) or current is None:
            size += 1
        elif isinstance(current, int | float):
            digits = _plain_number_digits(current)
            if digits is None:  # not obviously in range: the exact check
                reason, digits = number_problem(current)
                if reason:
                    problems.append((_spell(where), reason))
            size += (digits + 1) // 2 + 3  # "1 byte per two significant digits + 1 byte", with margin
        elif isinstance(current, dict):
            size += 3 + len(current)  # 3 bytes per map, 1 per element
            for key, item in current.items():
                if type(key) is str and key.isascii() and 0 < len(key) <= MAX_NAME_BYTES:
                    size += len(key)  # a key with nothing to report (the common case, checked cheaply)
                    if type(item) is str and item.isascii() and depth < MAX_NESTING_LEVELS:
                        size += len(item)  # nor its value: not put on the stack
                    else:
                        stack.append((item, (where, key), depth + 1))
                    continue
                if not isinstance(key, str):
                    problems.append((_spell(where), f"has a key of type {type(key).__name__}, not a string"))
                    continue
                if key == "":
                    problems.append((_spell((where, key)), "is an empty key: DynamoDB refuses empty names"))
                elif _has_lone_surrogate(key):
                    problems.append((_spell((where, key)), "key " + _SURROGATE_MESSAGE))
                elif _utf8_length(key) > MAX_NAME_BYTES:
                    problems.append(
                        (
                            _spell((where, key)),
                            f"key is longer than {MAX_NAME_BYTES} bytes (DynamoDB's limit)",
                        )
                    )
                size += _utf8_length(key)
                stack.append((item, (where, key), depth + 1))
        elif isinstance(current, list):
            size += 3 + len(current)
            stack.extend((item, (where, position), depth + 1) for position, item in enumerate(current))
        else:
            problems.append((_spell(where), f"is a {type(current).__name__}, not a JSON value"))
    return problems[:MAX_PROBLEMS_PER_RECORD], size


def _spell(where: Any) -> str:
    """A lazily built path ((parent, key-or-index) pairs down from a string) as `data.a[3]["b c"]`."""
    steps: list[str | int] = []
    while isinstance(where, tuple):
        where, step = where
        steps.append(step)
    path = str(where)
    for step in reversed(steps):
        path = f"{path}[{step}]" if isinstance(step, int) else _member(path, step)
    return path


def _plain_number_digits(value: int | float) -> int | None:
    """Significant digits of a number DynamoDB certainly holds (an int below 10**38, a finite float between
    1E-130 and 1E+125 in magnitude, which has at most 17 digits), else None. The common case, made cheap:
    `number_problem` builds a Decimal."""
    if type(value) is int:
        return len(str(abs(value)).rstrip("0")) or 1 if -(10**38) < value < 10**38 else None
    if type(value) is float and (value == 0.0 or 1e-130 <= abs(value) < 1e125):
        return len(repr(abs(value)).split("e")[0].replace(".", "").strip("0")) or 1
    return None


def number_problem(value: int | float) -> tuple[str | None, int]:
    """Why DynamoDB cannot hold this number as the processor stores it (floats as Decimal(str(value)),
    as `storage.to_dynamo` does), and its significant digits."""
    if isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number", 0
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if number == 0:
        return None, 1
    # Leading and trailing zeroes do not count ("they are trimmed"): 10**40 is one digit, 1E+40.
    significant = len("".join(map(str, number.as_tuple().digits)).strip("0"))
    exponent = number.adjusted()
    if significant > MAX_NUMBER_DIGITS:
        return (
            f"has {significant} significant digits; DynamoDB stores numbers with at most {MAX_NUMBER_DIGITS}",
            significant,
        )
    if not MIN_NUMBER_EXPONENT <= exponent <= MAX_NUMBER_EXPONENT:
        return (
            f"is {'too large' if exponent > 0 else 'too small'} for DynamoDB: nonzero numbers must lie "
            "between 1E-130 and 9.99...E+125 in magnitude",
            significant,
        )
    return None, significant


def dynamodb_size(value: Any) -> int:
    """Size in bytes of a value as DynamoDB counts it (without an attribute name)."""
    return storable_problems(value, "value", 1)[1]


def item_problems(item: dict[str, Any], key_limits: dict[str, int]) -> list[str]:
    """Why DynamoDB would refuse this whole item (attribute name -> value, as the processor writes it):
    values, names, item size, and key attributes over their byte limits (`key_limits`)."""
    problems: list[str] = []
    size = 0
    for name, value in item.items():
        if type(value) is str and value.isascii():  # most bookkeeping: nothing to check but its size
            size += _utf8_length(name) + len(value)
            continue
        found, value_size = storable_problems(value, name, 1)
        problems.extend(f"{field} {message}" for field, message in found)
        size += _utf8_length(name) + value_size
    for name, limit in key_limits.items():
        value = item.get(name)
        if isinstance(value, str) and not 0 < _utf8_length(value) <= limit:
            problems.append(f"{name} is {_utf8_length(value)} bytes; a key attribute holds 1 to {limit}")
    if size > MAX_ITEM_BYTES:
        problems.append(f"the item is {size} bytes; DynamoDB stores items of at most {MAX_ITEM_BYTES} bytes")
    return problems[:MAX_PROBLEMS_PER_RECORD]


def _has_lone_surrogate(text: str) -> bool:
    # A str from JSON holds a surrogate only through a \uD800-\uDFFF escape that did not pair up
    # (json joins valid pairs into one code point), and no surrogate can be encoded as UTF-8.
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _escaped(text: str) -> str:
    """`text` with lone surrogates and other non-printables written as escapes (safe to show and store)."""
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else _no_surrogates(text)


def _no_surrogates(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


_SIMPLE_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$-]{0,63}")


def _member(path: str, key: str) -> str:
    """Field path of `key` inside the object at `path`: `data.sku`, or `data[""]`, `data["a b"]`."""
    if _SIMPLE_KEY.fullmatch(key):
        return f"{path}.{key}"
    shown = key if len(key) <= 40 else key[:40] + "..."
    return f"{path}[{json.dumps(shown)}]"


def _display(name: str) -> str:
    """A name from the request, safe to put in an error message (no lone surrogates, bounded length)."""
    shown = _escaped(name)
    return shown if len(shown) <= 80 else shown[:80] + "..."


# --- the schema interpreter ---------------------------------------------------------------------------
Checker = Callable[[Any, str], list[tuple[str, str]]]


def _compile(schema: dict[str, Any]) -> Checker:
    """A checker for `schema`: read once, then every value is checked by closures that hold what each
    keyword asks (the same checks, order and messages as reading the schema for every value; a third of
    ingest's validation time went to that reading: python -m bench handler_speed)."""
    expected: str | None = schema.get("type")
    json_types = _JSON_TYPES[expected] if expected is not None else None
    numeric = expected in ("integer", "number")  # JSON booleans are not numbers, although bool is an int
    required = tuple(schema.get("required", ()))
    properties = {name: (f"{name}.", _compile(sub)) for name, sub in schema.get("properties", {}).items()}
    closed = schema.get("additionalProperties") is False
    min_length: int | None = schema.get("minLength")
    max_length: int | None = schema.get("maxLength")
    pattern: str | None = schema.get("pattern")
    matches = _pattern(pattern).search if pattern is not None else None
    min_items: int | None = schema.get("minItems")
    max_items: int | None = schema.get("maxItems")
    items = _compile(schema["items"]) if "items" in schema else None

    def check(value: Any, path: str) -> list[tuple[str, str]]:
        if json_types is not None and (
            not isinstance(value, json_types) or (numeric and isinstance(value, bool))
        ):
            return [(path.rstrip(".") or "(body)", f"must be of type {expected}")]
        errors: list[tuple[str, str]] = []
        if isinstance(value, dict):
            for name in required:
                if name not in value:
                    errors.append((f"{path}{name}", "is required"))
            if closed and not properties.keys() >= value.keys():
                errors.extend(
                    (f"{path}{_display(name)}", "is not allowed") for name in value if name not in properties
                )
            for name, (step, member) in properties.items():
                if name in value:
                    errors.extend(member(value[name], path + step))
        elif isinstance(value, str):
            if min_length is not None and len(value) < min_length:
                errors.append((path.rstrip(".") or "(body)", f"must be at least {min_length} characters"))
            if max_length is not None and len(value) > max_length:
                errors.append((path.rstrip(".") or "(body)", f"must be at most {max_length} characters"))
            if matches is not None and not matches(value):
                errors.append((path.rstrip(".") or "(body)", f"does not match the required format {pattern}"))
        elif isinstance(value, list):
            if min_items is not None and len(value) < min_items:
                errors.append((path.rstrip(".") or "(body)", f"must have at least {min_items} items"))
            if max_items is not None and len(value) > max_items:
                errors.append((path.rstrip(".") or "(body)", f"must have at most {max_items} items"))
            if items is not None:
                for position, item in enumerate(value):
                    errors.extend(items(item, f"{path.rstrip('.')}[{position}]."))
        return errors

    return check


@cache
def _record_check() -> Checker:
    return _compile(record_schema())


@cache
def _pattern(pattern: str) -> re.Pattern[str]:
    """A JSON Schema (ECMA-262) pattern as a Python regex with the same meaning for what the schema uses:
    ASCII classes (`\\d` is [0-9], not any Unicode digit) and `$` as the end of the input (`\\Z`; Python's
    `$` also matches before a final newline)."""
    translated: list[str] = []
    position, in_class = 0, False
    while position < len(pattern):
        char = pattern[position]
        if char == "\\":
            translated.append(pattern[position : position + 2])
            position += 2
            continue
        if char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        translated.append(r"\Z" if char == "$" and not in_class else char)
        position += 1
    return re.compile("".join(translated), re.ASCII)
