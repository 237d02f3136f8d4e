"""Reading bulk-load input (JSON Lines or CSV) into records, and cutting them into API-sized batches.

Every input line ends up somewhere a person can see: a record in a batch, or an `InvalidLine` with its
line number and the reason. Batch boundaries depend only on the input bytes and the limits, so a resumed
run cuts exactly the same batches (and reuses the same Idempotency-Keys) as the run it continues.

Each line is checked with the API's own rules before it is batched, so one bad line never gets a whole
batch refused: the JSON is parsed strictly (`parse_line`: what the ingest function refuses - NaN,
Infinity, numbers beyond a double, lone UTF-16 surrogates, nesting deeper than MAX_JSON_DEPTH - is
refused here too), then the record goes through `rtp_pipeline.validation.validate_record`, the function
the ingest handler itself calls. No input, however malformed, raises: every problem is an InvalidLine.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from rtp_pipeline import validation  # the functions' own validator: one package, installed with rtp

from rtp_cli.operate.api_client import encode

ENVELOPE_OVERHEAD = len(b'{"records":[]}')
# The ingest function's parse bound (arrays/objects nested deeper are refused before parsing, so
# neither side ever recurses without limit); what the table can store is validate_record's to say.
MAX_JSON_DEPTH = 64
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
# A lone surrogate can only come from a \uD800-\uDFFF escape: raw ones are not valid UTF-8.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by surrogateescape


@dataclass(frozen=True)
class InvalidLine:
    line: int
    reason: str


@dataclass(frozen=True)
class Item:
    line: int
    record: dict[str, Any]
    encoded: bytes


@dataclass
class Batch:
    index: int
    lines: list[int] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)
    encoded_bytes: int = 0  # sum(len(e) for e in encoded), kept as records are added (`add`)

    @property
    def count(self) -> int:
        return len(self.lines)

    def add(self, line: int, encoded: bytes) -> None:
        self.lines.append(line)
        self.encoded.append(encoded)
        self.encoded_bytes += len(encoded)

    def body(self) -> bytes:
        return b'{"records":[' + b",".join(self.encoded) + b"]}"

    def size_with(self, encoded: bytes) -> int:
        """The body's size with one more record: the records, a comma between each two, the envelope."""
        return ENVELOPE_OVERHEAD + self.encoded_bytes + len(self.encoded) + len(encoded)


@dataclass(frozen=True)
class InputOptions:
    fmt: str = "jsonl"  # jsonl | csv
    record_type: str | None = None  # CSV: the type of every row; JSON Lines: the default when absent
    id_column: str | None = None  # CSV: the column that holds each row's id (kept in data too)
    source: str | None = None  # sets `source` on records that have none

    def fingerprint(self) -> dict[str, Any]:
        return {
            "format": self.fmt,
            "type": self.record_type,
            "idColumn": self.id_column,
            "source": self.source,
        }


def file_digest(stream: BinaryIO) -> tuple[str, int]:
    """sha256 of the whole input and its number of lines (for the progress bar)."""
    digest, lines = hashlib.sha256(), 0
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        digest.update(chunk)
        lines += chunk.count(b"\n")
    return digest.hexdigest(), lines


def read_items(stream: BinaryIO, options: InputOptions) -> Iterator[Item | InvalidLine]:
    seen_ids: dict[str, int] = {}
    rows = _csv_rows(stream, options) if options.fmt == "csv" else _jsonl_rows(stream)
    for line, value in rows:
        if isinstance(value, InvalidLine):
            yield value
            continue
        record = _complete(value, options)
        problems = validation.validate_record(record)
        if problems:
            yield InvalidLine(line, "; ".join(f"{p.field} {p.message}" for p in problems))
            continue
        try:
            encoded = encode(record)
        except (UnicodeEncodeError, ValueError) as error:  # the API could not read what we would send
            yield InvalidLine(line, f"cannot be sent as JSON: {error}")
            continue
        record_id = record.get("id")
        if record_id is not None:
            if record_id in seen_ids:
                yield InvalidLine(line, f"id {record_id!r} was already used on line {seen_ids[record_id]}")
                continue
            seen_ids[record_id] = line
        yield Item(line, record, encoded)


def _complete(record: dict[str, Any], options: InputOptions) -> dict[str, Any]:
    if options.record_type and "type" not in record:
        record = {**record, "type": options.record_type}
    if options.source and "source" not in record:
        record = {**record, "source": options.source}
    return record


class LineError(ValueError):
    """Why one input line is not a JSON document the API would accept."""


def parse_line(raw: bytes) -> Any:
    """Parse one line as strictly as the ingest function parses a body. Raises LineError."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise LineError(f"not valid UTF-8: {error}") from None
    # Nesting needs an opening bracket per level: a line with few (strings included) needs no scan.
    depth = json_depth(text) if text.count("[") + text.count("{") > MAX_JSON_DEPTH else 0
    if depth > MAX_JSON_DEPTH:
        raise LineError(
            f"arrays and objects nested {depth} levels deep; at most {MAX_JSON_DEPTH} levels are accepted"
        )
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:  # not reachable below MAX_JSON_DEPTH; kept so that it can never raise
        raise LineError(f"nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    except ValueError as error:  # JSONDecodeError and the two refusals below
        raise LineError(f"not valid JSON: {error}") from None
    if _SURROGATE_ESCAPE.search(text):
        where = _lone_surrogate(value)
        if where is not None:
            raise LineError(
                f"{where} holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), "
                "which is not valid Unicode"
            )
    return value


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in `text` (brackets inside strings do not count); linear."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub("", text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")  # Python's json accepts NaN/Infinity; JSON does not


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _lone_surrogate(value: Any) -> str | None:
    """The path of the first string or key holding a lone surrogate, or None (no recursion)."""
    pending: list[tuple[Any, str]] = [(value, "")]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return path or "(line)"
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{path}.{key}" if path else str(key)
                if _SURROGATE.search(key):
                    return f"a key in {path or '(line)'}"
                pending.append((child, name))
        elif isinstance(item, list):
            pending.extend((child, f"{path}[{index}]") for index, child in enumerate(item))
    return None


def _jsonl_rows(stream: BinaryIO) -> Iterator[tuple[int, Any]]:
    for number, raw in enumerate(stream, start=1):
        text = raw.strip()
        if not text:
            continue  # blank lines hold no record
        try:
            value = parse_line(text)
        except LineError as error:
            yield number, InvalidLine(number, str(error))
            continue
        if not isinstance(value, dict):
            yield number, InvalidLine(number, f"must be a JSON object (a record), got {type(value).__name__}")
            continue
        yield number, value


def _csv_rows(stream: BinaryIO, options: InputOptions) -> Iterator[tuple[int, Any]]:
    # Undecodable bytes become \udc80-\udcff (surrogateescape) and fail only their own row: a strict
    # decoder would end the file at the first bad byte (or raise for ever on a truncated last character).
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as error:
        yield 1, InvalidLine(1, f"header is not valid CSV: {error}")
        return
    if any(_UNDECODABLE.search(cell) for cell in header):
        yield 1, InvalidLine(1, "header is not valid UTF-8")
        return
    if options.id_column and options.id_column not in header:
        yield (
            1,
            InvalidLine(1, f"no column {options.id_column!r} for --id-column (columns: {', '.join(header)})"),
        )
        return
    failed_at = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            if reader.line_num == failed_at:  # no progress: the reader cannot go on
                yield failed_at, InvalidLine(failed_at, f"not valid CSV from here on (not read): {error}")
                return
            failed_at = reader.line_num
            yield reader.line_num, InvalidLine(reader.line_num, f"not valid CSV: {error}")
            continue
        number = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if any(_UNDECODABLE.search(cell) for cell in row):
            yield number, InvalidLine(number, "not valid UTF-8")
            continue
        if len(row) != len(header):
            yield number, InvalidLine(number, f"has {len(row)} columns; the header has {len(header)}")
            continue
        data = dict(zip(header, row, strict=True))
        record: dict[str, Any] = {"data": data}
        if options.id_column:
            record["id"] = data[options.id_column]
        yield number, record


def batches(
    items: Iterator[Item | InvalidLine],
    max_records: int,
    max_bytes: int,
    invalid: list[InvalidLine],
) -> Iterator[Batch]:
    """Greedy, deterministic batching within both limits. Invalid lines are appended to `invalid`."""
    current = Batch(0)
    for item in items:
        if isinstance(item, InvalidLine):
            invalid.append(item)
            continue
        if ENVELOPE_OVERHEAD + len(item.encoded) > max_bytes:
            invalid.append(
                InvalidLine(
                    item.line, f"record is {len(item.encoded)} bytes; the API takes at most {max_bytes}"
                )
            )
            continue
        if current.count and (current.count >= max_records or current.size_with(item.encoded) > max_bytes):
            yield current
            current = Batch(current.index + 1)
        current.add(item.line, item.encoded)
    if current.count:
        yield current


def line_ranges(lines: list[int], limit: int = 12) -> str:
    """[1,2,3,7,9,10] -> '1-3, 7, 9-10' (at most `limit` ranges, then '... (N more)')."""
    ranges: list[str] = []
    ordered = sorted(set(lines))
    start = prev = None
    for number in [*ordered, None]:
        if start is not None and (number is None or prev is None or number != prev + 1):
            ranges.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if number is not None and start is None:
            start = number
        prev = number
    shown = ", ".join(ranges[:limit])
    return shown + (f", ... ({len(ranges) - limit} more ranges)" if len(ranges) > limit else "")
