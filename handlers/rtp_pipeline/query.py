"""Read models for GET /records/{id}, GET /batches/{batchId} and GET /records?status=REJECTED."""

from __future__ import annotations

import base64
import binascii
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Any

from rtp_pipeline.errors import ApiError
from rtp_pipeline.storage import (
    PROCESSED,
    REJECTED,
    REJECTED_INDEX,
    REJECTED_SHARDS,
    PipelineTable,
    deserialize,
)

_INTERNAL = {"pk", "gsi1pk", "gsi1sk"}


def record_view(table: PipelineTable, record_id: str) -> dict[str, Any]:
    item = table.get_record(record_id)
    if item is None:
        raise ApiError(404, "NOT_FOUND", f"no record {record_id!r} (it may still be queued: check its batch)")
    return {key: value for key, value in item.items() if key not in _INTERNAL}


def batch_view(table: PipelineTable, batch_id: str) -> dict[str, Any]:
    item = table.get_batch(batch_id)
    if item is None:
        raise ApiError(404, "NOT_FOUND", f"no batch {batch_id!r}")
    done = item["processed"] + item["rejected"] + item["duplicates"]
    return {
        "batchId": item["batchId"],
        "status": "COMPLETE" if done >= item["accepted"] else "IN_PROGRESS",
        "accepted": item["accepted"],
        "processed": item["processed"],
        "rejected": item["rejected"],
        "duplicates": item["duplicates"],
        "pending": max(item["accepted"] - done, 0),
        "receivedAt": item["receivedAt"],
        "correlationId": item.get("correlationId", ""),
        "lastError": item.get("lastError"),
        "ids": item.get("ids", []),
    }


# --- GET /records?status=REJECTED&since=...: the sparse REJECTED index ------------------------------------
# The index (storage.rejected_index_keys) is partitioned by hour and shard: `rk` = `<yyyy-mm-ddThh>#<NN>`,
# `rs` = `<processedAt>#<recordId>`. `rs` orders every REJECTED record by time, then id, across all shards
# and hours, so one page is a merge of the 16 shards of each hour of the window, in order, and "where the
# listing stopped" is one sort key: every shard's next record is the first after it (before it, newest
# first). The continuation token is that position with the window and order it belongs to.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Hours (x 16 Queries, the shards of an hour run in parallel) one request looks at at most; a longer window
# is a page with fewer rows (possibly none) and a token to continue, so a request never outlasts its timeout.
HOURS_PER_REQUEST = 48
MAX_WINDOW = timedelta(days=400)
MAX_TOKEN_CHARS = 1024
_RELATIVE = re.compile(r"([1-9][0-9]{0,5})([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})")
_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_HOUR = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}")
_SORT_KEY = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)#[A-Za-z0-9._:-]{1,200}")
_ORDERS = ("newest", "oldest")


def bad_request(message: str, field: str) -> ApiError:
    return ApiError(400, "BAD_REQUEST", message, [{"field": field, "message": message}])


def iso_ms(moment: datetime) -> str:
    """A moment as records store `processedAt`: ISO-8601 UTC, milliseconds, `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_moment(value: str, now: datetime, field: str) -> datetime:
    """RFC 3339 (`2026-11-28T21:00:00Z`, an offset, fractions) or a duration before `now` (30m, 1h, 2d)."""
    text = value.strip()
    relative = _RELATIVE.fullmatch(text)
    if relative:
        try:
            return now - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
        except OverflowError:  # 999999d: before the year 1
            raise bad_request(f"{field}: {value[:64]!r} reaches before the year 1", field) from None
    absolute = _RFC3339.fullmatch(text)
    if absolute:
        day, clock, fraction, zone = absolute.groups()
        zone = "+00:00" if zone in ("Z", "z") else zone
        try:
            return datetime.fromisoformat(f"{day}T{clock}.{(fraction or '0')[:6].ljust(6, '0')}{zone}")
        except ValueError:
            pass  # 2026-02-30, 25:00:00, +99:00: the shape is right, the date is not
    raise bad_request(
        f"{field}: {value[:64]!r} is neither an RFC 3339 time (2026-11-28T21:00:00Z) nor a duration "
        "before now (a number and s, m, h or d: 30m, 1h, 2d)",
        field,
    )


@dataclass(frozen=True)
class Window:
    """Processed-at bounds (inclusive, as stored: milliseconds) and the order of a listing."""

    since: str
    until: str
    newest_first: bool

    @property
    def low(self) -> str:  # every sort key of a record processed at `since` or later sorts at or above it
        return self.since

    @property
    def high(self) -> str:  # `$` follows `#`: above every sort key of a record processed at `until`
        return self.until + "$"

    def hours(self) -> list[str]:
        first = datetime.fromisoformat(self.since[:13] + ":00:00+00:00")
        last = datetime.fromisoformat(self.until[:13] + ":00:00+00:00")
        count = int((last - first) / timedelta(hours=1)) + 1
        hours = [f"{first + timedelta(hours=n):%Y-%m-%dT%H}" for n in range(count)]
        return hours[::-1] if self.newest_first else hours


@dataclass(frozen=True)
class Position:
    """Where a listing stopped: in `hour`, after (newest first: before) sort key `after`, or at its start."""

    hour: str
    after: str | None


def encode_token(window: Window, position: Position) -> str:
    document = {
        "v": 1,
        "s": window.since,
        "u": window.until,
        "o": _ORDERS[0] if window.newest_first else _ORDERS[1],
        "h": position.hour,
        "a": position.after,
    }
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> tuple[Window, Position]:
    """The window and position a token names; a 400 for anything this API did not issue."""
    problem = bad_request("next: not a continuation token of this listing (pass `next` as returned)", "next")
    if not 0 < len(token) <= MAX_TOKEN_CHARS or not token.isascii():
        raise problem
    try:
        document = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise problem from error
    if (
        not isinstance(document, dict)
        or set(document) != {"v", "s", "u", "o", "h", "a"}
        or document["v"] != 1
    ):
        raise problem
    since, until, order, hour, after = (document[key] for key in ("s", "u", "o", "h", "a"))
    if not all(isinstance(value, str) for value in (since, until, order, hour)) or order not in _ORDERS:
        raise problem
    if not (_AT.fullmatch(since) and _AT.fullmatch(until) and _HOUR.fullmatch(hour)) or since > until:
        raise problem
    try:
        window = Window(_normal(since), _normal(until), order == _ORDERS[0])
    except ValueError as error:
        raise problem from error
    if window.since != since or window.until != until or hour not in window.hours():
        raise problem
    if after is not None:
        matched = _SORT_KEY.fullmatch(after) if isinstance(after, str) else None
        if matched is None or not after.startswith(hour) or not window.low <= after <= window.high:
            raise problem
    return window, Position(hour, after)


def _normal(at: str) -> str:
    """`at` parsed and written again: equal to itself only for a real moment in the stored form."""
    return iso_ms(datetime.fromisoformat(at.replace("Z", "+00:00")))


def listing_window(params: dict[str, str], now: datetime) -> Window:
    """The window a first page asks for (since, until, order), checked."""
    since = parse_moment(params["since"], now, "since")
    until = parse_moment(params["until"], now, "until") if params.get("until") else now
    if since > until:
        raise bad_request("since: must not be after until", "since")
    if until - since > MAX_WINDOW:
        raise bad_request(f"since: the window may span at most {MAX_WINDOW.days} days", "since")
    order = params.get("order") or _ORDERS[0]
    if order not in _ORDERS:
        raise bad_request("order: newest (the default) or oldest", "order")
    return Window(iso_ms(since), iso_ms(until), order == _ORDERS[0])


def listing_limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    if not (value.isascii() and value.isdigit() and 0 < int(value) <= MAX_LIMIT):
        raise bad_request(f"limit: a whole number from 1 to {MAX_LIMIT}", "limit")
    return int(value)


def rejected_listing(table: PipelineTable, params: dict[str, str], now: datetime) -> dict[str, Any]:
    """GET /records?status=REJECTED&since=...[&until=...][&order=newest|oldest][&limit=N][&next=TOKEN]."""
    status = params.get("status")
    if status == PROCESSED:
        raise bad_request(
            "status: only REJECTED records can be listed; PROCESSED records are not indexed, by design (an "
            "index of every record would double each record's write cost); read one with GET /records/{id}",
            "status",
        )
    if status != REJECTED:
        raise bad_request("status: REJECTED is the one status that can be listed", "status")
    if "since" not in params:
        raise bad_request("since: required (an RFC 3339 time or a duration before now: 1h)", "since")
    limit = listing_limit(params.get("limit"))
    window = listing_window(params, now)  # a first page's checks apply to every page
    position = None
    if params.get("next"):
        window, position = decode_token(params["next"])  # a token continues the listing it came from
    rows, following = RejectedIndex(table).page(window, limit, position)
    return {
        "status": REJECTED,
        "since": window.since,
        "until": window.until,
        "order": _ORDERS[0] if window.newest_first else _ORDERS[1],
        "records": rows,
        "next": encode_token(window, following) if following else None,
    }


class RejectedIndex:
    """Pages of the REJECTED index, merged across the shards of each hour."""

    def __init__(self, table: PipelineTable) -> None:
        self.table = table

    def page(
        self, window: Window, limit: int, position: Position | None
    ) -> tuple[list[dict[str, Any]], Position | None]:
        """Up to `limit` rows in the window's order from `position`, and where the next page starts (None
        at the end). Fewer rows and a position when the hours a request may look at are used up."""
        hours = window.hours()
        start = hours.index(position.hour) if position else 0
        rows: list[dict[str, Any]] = []
        # The 16 Queries of an hour run in parallel (boto3 clients are thread-safe): a request's latency is
        # its hours, not its hours x 16. Each shard reads up to `wanted` + 1 entries, so a full hour reads
        # at most 16 x that for `wanted` rows (an operator's listing, not a hot path). X-Ray puts the
        # worker threads' Query subsegments under the invocation's root, not under this method's
        # (https://github.com/aws/aws-xray-sdk-python/issues/342): they are traced, one level up.
        with ThreadPoolExecutor(max_workers=REJECTED_SHARDS) as pool:
            for index in range(start, len(hours)):
                hour = hours[index]
                after = position.after if position and hour == position.hour else None
                wanted = limit - len(rows)
                keys = [f"{hour}#{shard:02d}" for shard in range(REJECTED_SHARDS)]
                shards = list(pool.map(self._shard, keys, repeat(window), repeat(after), repeat(wanted)))
                merged = sorted(
                    (row for found, _ in shards for row in found),
                    key=lambda row: row["_rs"],
                    reverse=window.newest_first,
                )
                rows.extend(merged[:wanted])
                if len(merged) > wanted or any(more for _, more in shards):
                    return _public(rows), Position(hour, rows[-1]["_rs"])
                following = Position(hours[index + 1], None) if index + 1 < len(hours) else None
                if len(rows) == limit or index + 1 - start >= HOURS_PER_REQUEST:
                    return _public(rows), following
        return _public(rows), None

    def _shard(
        self, key: str, window: Window, after: str | None, wanted: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """At least `wanted` rows of one hour's shard in order (fewer if it has no more), and whether it
        may hold more. The bounds are inclusive (BETWEEN): the row at `after` itself is dropped."""
        low, high = window.low, window.high
        if after is not None:
            high, low = (after, low) if window.newest_first else (high, after)
        request: dict[str, Any] = {
            "TableName": self.table.name,
            "IndexName": REJECTED_INDEX,
            "KeyConditionExpression": "rk = :k AND rs BETWEEN :low AND :high",
            "ExpressionAttributeValues": {":k": {"S": key}, ":low": {"S": low}, ":high": {"S": high}},
            "ScanIndexForward": not window.newest_first,
            "Limit": wanted + 1,
        }
        rows: list[dict[str, Any]] = []
        while True:
            answer = self.table.db.query(**request)
            rows.extend(_row(item) for item in answer.get("Items", []) if item["rs"]["S"] != after)
            last = answer.get("LastEvaluatedKey")
            if not last or len(rows) >= wanted:
                return rows, bool(last)
            request["ExclusiveStartKey"] = last


def _row(item: dict[str, Any]) -> dict[str, Any]:
    """An index entry (keys and the projected b, t, e) as a listing row."""
    values = deserialize(item)
    processed_at, _, record_id = str(values["rs"]).partition("#")
    return {
        "recordId": record_id,
        "batchId": values.get("b", ""),
        "status": REJECTED,
        "type": values.get("t", ""),
        "processedAt": processed_at,
        "reason": values.get("e", ""),
        "_rs": values["rs"],
    }


def _public(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in row.items() if key != "_rs"} for row in rows]
