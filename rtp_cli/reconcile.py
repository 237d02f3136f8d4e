"""`rtp reconcile --since 1h`: where is every record of a time window? Counts per hop, and the gaps.

The window selects the requests that *arrived* in [since, until): a batch id is a ULID whose first 10
characters are its arrival time in milliseconds, and ingest keeps every request's body at
`raw/YYYY/MM/DD/HH/<batchId>.json` before it validates anything (`rtp_pipeline.ingest`). So:

1. **raw objects**: ListObjectsV2 of the raw prefix of each hour of the window (1,000 keys a call; the first
   hour starts after the window's first ULID with `StartAfter`, the last stops at its end: keys list in
   ascending order, and ULIDs sort by time). Every request that reached ingest, accepted or not.
2. **requests accepted**: BatchGetItem of the `BATCH#<batchId>` items (100 keys a call, eventually
   consistent). Ingest writes one only for a request it accepted, before enqueueing; a raw object without
   one is a request refused (400, 413, ...), one that failed before enqueueing, or an idempotent retry
   answered from an earlier batch: shown, never a gap.
3. **records accepted / stored**: the batch counters (`accepted`, `processed`, `rejected`, `duplicates`)
   and `cc`, the set of chunks of 100 records already counted (`rtp_pipeline.storage`).
4. **verified**: each accepted id's `REC#` item (BatchGetItem, 100 keys a call, projection pk, b, s,
   eventually consistent; ids are `<batchId>-<index>` or, for batches with `clientIds`, the `IDS#` item).
   A record is stored by its own batch (PROCESSED/REJECTED) or is a duplicate (another batch owns the id).
   Over the counted chunks, the items must agree with the counters. A record found missing, and a batch
   found stuck, are read again strongly consistent before they are reported. `--counts-only` skips this
   step (O(batches) instead of O(records)).
5. **queued or in flight**: the work queue's (and the replay queue's, when the stack has `ReplayQueueUrl`)
   approximate visible, in-flight and delayed messages. A batch with chunks not yet counted while any of
   them holds messages is *pending*: not a gap.
6. **dead-lettered**: the batch ids of the DLQ's claim checks, peeked without consuming (as `rtp dlq peek`).

A gap (exit 1): a record missing from the table in a counted chunk, or in a batch that is dead-lettered or
stuck (chunks not counted while nothing is queued or in flight); counters that disagree with the record
items. Exit 0: every accepted record is accounted for (stored, or pending). Usage and configuration
errors exit 2 (`ReconcileError`).

Cost at scale (the README's "rtp reconcile" section has the table). Nothing scans the table: the work is
linear in the window's requests and records, and independent of the table's size. For N records in R
requests (r = N / R records per request):

- S3: ceil(R / 1,000) ListObjectsV2 calls plus one per hour of the window; each is billed as a LIST
  request (the `s3.put_request` price: PUT, COPY, POST, LIST). ListObjectsV2 returns up to 1,000 keys
  (https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html).
- DynamoDB: ceil(R / 100) BatchGetItem calls for the batch items, one IDS item per batch with client ids,
  ceil(N / 100) for the record items (up to 100 keys and 16 MB a call:
  https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html). Each item read
  costs its size rounded up to 4 KB, half a unit eventually consistent, and BatchGetItem rounds each item
  on its own (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html#read-operation-consumption):
  0.5 read unit per record item up to 4 KB (the rule is stated on the item's size, and a projection is not
  said to reduce it: the estimate charges whole items), 0.5 per batch item, 0.5 per 4 KB of an IDS item.
- SQS: 3 GetQueueAttributes, plus about ceil(DLQ sample / 10) ReceiveMessage when the DLQ holds messages
  and a batch of the window is not complete.

100 million records in 500-record requests: 200,000 raw objects (200 LIST calls + 1 per hour), 2,000
BatchGetItem for the batches (100,000 read units), 1,000,000 BatchGetItem for the records (50,000,000 read
units): about $6.26 over 24 hours at the prices of `rtp_cli.pricing` (`estimate_cost`), half a read unit per
record. `--counts-only`: the first two only, about $0.014.
`tests/operate/test_reconcile_unit.py` counts the calls of a known window through a botocore hook and fails
when the calls per record or per request exceed this arithmetic.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import typer
from botocore.exceptions import BotoCoreError, ClientError

from rtp_cli.errors import fail
from rtp_cli.options import EnvOption, ProfileOption, SinceOption, UntilOption
from rtp_cli.status import queue_depth

# stack/data.py RAW_PREFIX and rtp_pipeline.storage.RawStore.key_for: raw/<YYYY/MM/DD/HH>/<batchId>.json
RAW_PREFIX = "raw/"
LIST_KEYS = 1000  # ListObjectsV2's most keys per call
BATCH_GET_KEYS = 100  # BatchGetItem's most keys per call (rtp_pipeline.storage.BATCH_GET_KEYS)
CHUNK_RECORDS = 100  # records counted together on the batch (rtp_pipeline.storage.CHUNK_RECORDS)
DLQ_SAMPLE_MAX = 1000  # DLQ messages peeked at most (100 ReceiveMessage calls)
BATCH_GROUP = 100  # batches whose records are read together (bounds memory: at most 50,000 ids)
READ_WORKERS = 8  # BatchGetItem calls in flight (below botocore's 10 pooled connections)
UNPROCESSED_ATTEMPTS = 8
NOT_ACCEPTED_SHOWN = 10
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_T = TypeVar("_T")
# The batch id: a ULID, or a keyed one (`K` after the time: rtp_pipeline.storage.BATCH_ID).
_RAW_KEY = re.compile(
    r"(\d{4})/(\d{2})/(\d{2})/(\d{2})/([0-9A-HJKMNP-TV-Z]{10}K?[0-9A-HJKMNP-TV-Z]{16})\.json"
)


class ReconcileError(Exception):
    """The reconciliation cannot run as asked (bad window, unreadable table): exit 2."""


# --- the window --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime

    @property
    def since_ms(self) -> int:
        return _millis(self.since)

    @property
    def until_ms(self) -> int:
        return _millis(self.until)

    def hours(self) -> list[datetime]:
        """The hours whose raw prefix holds requests of the window (the last is the hour of until - 1 ms)."""
        hour = self.since.replace(minute=0, second=0, microsecond=0)
        last = datetime.fromtimestamp((self.until_ms - 1) / 1000, UTC)
        found = []
        while hour <= last:
            found.append(hour)
            hour += timedelta(hours=1)
        return found


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_window(since: str, until: str | None, now: datetime | None = None) -> Window:
    """`--since/--until` as `rtp records` reads them (the query route's parser): RFC 3339 or a duration
    before now (30m, 1h, 2d); until defaults to now; at most 400 days."""
    from rtp_pipeline.errors import ApiError
    from rtp_pipeline.query import MAX_WINDOW, parse_moment

    now = now or datetime.now(UTC)
    try:
        start = parse_moment(since, now, "--since").astimezone(UTC)
        end = parse_moment(until, now, "--until").astimezone(UTC) if until else now
    except ApiError as error:
        raise ReconcileError(error.message) from None
    if start >= end:
        raise ReconcileError(f"--since ({_iso(start)}) must be before --until ({_iso(end)})")
    if end - start > MAX_WINDOW:
        raise ReconcileError(f"the window may span at most {MAX_WINDOW.days} days")
    return Window(start, end)


def ulid_millis(batch_id: str) -> int:
    """A batch id's arrival time: its first 10 Crockford base32 characters (`ingest.new_batch_id`)."""
    value = 0
    for char in batch_id[:10]:
        value = value * 32 + _CROCKFORD.index(char)
    return value


def ulid_prefix(millis: int) -> str:
    """The first 10 characters of every batch id of that millisecond."""
    return "".join(_CROCKFORD[(millis >> shift) & 31] for shift in range(45, -1, -5))


# --- the pure part: one batch's verdict --------------------------------------------------------------

OK, PENDING, DEAD_LETTERED, STUCK = "complete", "pending", "dead-lettered", "stuck"


@dataclass(frozen=True)
class BatchState:
    """What the batch item says (`BATCH#<batchId>`)."""

    batch_id: str
    accepted: int
    processed: int = 0
    rejected: int = 0
    duplicates: int = 0
    counted: frozenset[int] = frozenset()  # `cc`: chunk numbers counted
    client_ids: bool = False
    last_error: str = ""
    by_record: bool = False  # `byRecord`: one API-assigned record, no counters (its item is its count)

    @property
    def chunks(self) -> int:
        return math.ceil(self.accepted / CHUNK_RECORDS)

    @property
    def complete(self) -> bool:
        return all(chunk in self.counted for chunk in range(self.chunks))

    @property
    def counted_records(self) -> int:
        return self.processed + self.rejected + self.duplicates

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> BatchState:
        """From a BatchGetItem answer (attribute values)."""

        def number(name: str) -> int:
            value = item.get(name, {})
            return int(value["N"]) if isinstance(value, dict) and "N" in value else 0

        return cls(
            batch_id=str(item.get("batchId", {}).get("S", "")) or str(item["pk"]["S"])[len("BATCH#") :],
            accepted=number("accepted"),
            processed=number("processed"),
            rejected=number("rejected"),
            duplicates=number("duplicates"),
            counted=frozenset(int(n) for n in item.get("cc", {}).get("NS", [])),
            client_ids=bool(item.get("clientIds", {}).get("BOOL", False)),
            last_error=str(item.get("lastError", {}).get("S", "")),
            by_record=bool(item.get("byRecord", {}).get("BOOL", False)),
        )

    def counted_by(self, record: Found | None) -> BatchState:
        """A `by_record` batch as if counted from its one record's item (rtp_pipeline.storage
        `counted_by_record`): chunk 0 counted once its own batch stored it, with its status."""
        if not self.by_record:
            return self
        status = record.status if record is not None and record.batch_id == self.batch_id else ""
        return replace(
            self,
            processed=int(status == "P"),
            rejected=int(status == "R"),
            duplicates=0,
            counted=frozenset({0}) if status else frozenset(),
        )


@dataclass(frozen=True)
class Found:
    """What the table holds under `REC#<id>`: the owning batch (`b`) and the status code (`s`: P/R)."""

    batch_id: str
    status: str


@dataclass
class Verdict:
    """One batch, classified. `missing`: (record id, why) of records that are gaps."""

    batch: BatchState
    state: str  # complete | pending | dead-lettered | stuck
    missing: list[tuple[str, str]] = field(default_factory=list)
    mismatch: str = ""
    verified: dict[str, int] | None = None  # processed, rejected, duplicates, missing (all chunks)
    unsettled: int = 0  # records not accounted for yet (uncounted chunks)

    @property
    def gap(self) -> bool:
        return self.state in (DEAD_LETTERED, STUCK) or bool(self.missing) or bool(self.mismatch)


def classify(
    batch: BatchState,
    ids: Sequence[str] | None,
    found: Mapping[str, Found] | None,
    queued: bool,
    dead_lettered: bool,
) -> Verdict:
    """Classify one batch. `ids` and `found` are None with --counts-only (no record reads); otherwise `ids`
    are the batch's accepted ids in request order and `found` what the table holds for them.

    - state: complete (every chunk counted), else dead-lettered (its claim check is in the DLQ), pending
      (messages are queued or in flight), or stuck (nothing queued: no delivery will ever count it).
    - missing: ids with no item in a counted chunk (deleted, or never written although counted), and every
      id not stored of a dead-lettered or stuck batch.
    - mismatch: the counters disagree with `accepted` or with the items of the counted chunks."""
    if batch.complete:
        state = OK
    elif dead_lettered:
        state = DEAD_LETTERED
    elif queued:
        state = PENDING
    else:
        state = STUCK
    verdict = Verdict(batch, state, unsettled=max(batch.accepted - batch.counted_records, 0))
    problems = []
    if batch.counted_records > batch.accepted or (batch.complete and batch.counted_records != batch.accepted):
        problems.append(
            f"counters say {batch.counted_records} stored (processed {batch.processed}, rejected "
            f"{batch.rejected}, duplicates {batch.duplicates}) of {batch.accepted} accepted"
        )
    if ids is not None and found is not None:
        if len(ids) != batch.accepted:
            problems.append(f"{len(ids)} ids listed for {batch.accepted} accepted")
        verified = Counter[str]()
        counted = Counter[str]()  # over the counted chunks only: what the counters must equal
        unsettled = 0
        for index, record_id in enumerate(ids):
            item = found.get(record_id)
            in_counted = index // CHUNK_RECORDS in batch.counted
            if item is None:
                verified["missing"] += 1
                if in_counted:
                    verdict.missing.append((record_id, "missing from the table (its chunk was counted)"))
                else:
                    unsettled += 1
                    if state in (DEAD_LETTERED, STUCK):
                        verdict.missing.append((record_id, f"not stored: batch {state}"))
                continue
            kind = (
                "duplicates"
                if item.batch_id != batch.batch_id
                else ("processed" if item.status == "P" else "rejected")
            )
            verified[kind] += 1
            if in_counted:
                counted[kind] += 1
        verdict.verified = {
            name: verified[name] for name in ("processed", "rejected", "duplicates", "missing")
        }
        verdict.unsettled = unsettled
        expected = {"processed": batch.processed, "rejected": batch.rejected, "duplicates": batch.duplicates}
        disagree = [
            f"{name} {expected[name]} counted, {counted[name]} found"
            for name in expected
            if counted[name] != expected[name]
        ]
        if disagree and not verdict.missing:  # missing items already explain a lower count
            problems.append("counters disagree with the record items: " + ", ".join(disagree))
    verdict.mismatch = "; ".join(problems)
    return verdict


# --- totals ------------------------------------------------------------------------------------------


@dataclass
class Totals:
    raw_objects: int = 0
    unrecognized_keys: int = 0
    not_accepted: int = 0
    not_accepted_keys: list[str] = field(default_factory=list)
    requests_accepted: int = 0
    records_accepted: int = 0
    stored: Counter[str] = field(default_factory=Counter)
    verified: Counter[str] = field(default_factory=Counter)
    by_state: dict[str, Counter[str]] = field(
        default_factory=lambda: {state: Counter() for state in (OK, PENDING, DEAD_LETTERED, STUCK)}
    )
    mismatched_batches: int = 0
    gap_records: int = 0
    gap_batches: list[dict[str, Any]] = field(default_factory=list)
    gap_batch_count: int = 0
    missing: list[dict[str, str]] = field(default_factory=list)
    missing_count: int = 0

    def add(self, verdict: Verdict, max_ids: int) -> None:
        batch = verdict.batch
        self.requests_accepted += 1
        self.records_accepted += batch.accepted
        for name in ("processed", "rejected", "duplicates"):
            self.stored[name] += getattr(batch, name)
        if verdict.verified is not None:
            self.verified.update(verdict.verified)
        self.by_state[verdict.state]["batches"] += 1
        self.by_state[verdict.state]["records"] += verdict.unsettled
        self.mismatched_batches += bool(verdict.mismatch)
        if not verdict.gap:
            return
        self.gap_batch_count += 1
        unaccounted = (
            len(verdict.missing)
            if verdict.verified is not None
            else (verdict.unsettled if verdict.state in (DEAD_LETTERED, STUCK) else 0)
        )
        self.gap_records += unaccounted
        if len(self.gap_batches) < max_ids:
            self.gap_batches.append(
                {
                    "batchId": batch.batch_id,
                    "state": verdict.state,
                    "accepted": batch.accepted,
                    "processed": batch.processed,
                    "rejected": batch.rejected,
                    "duplicates": batch.duplicates,
                    "chunksCounted": f"{len(batch.counted)} of {batch.chunks}",
                    "unaccounted": unaccounted,
                    "problem": verdict.mismatch,
                    "lastError": batch.last_error,
                }
            )
        for record_id, why in verdict.missing:
            self.missing_count += 1
            if len(self.missing) < max_ids:
                self.missing.append({"recordId": record_id, "batchId": batch.batch_id, "why": why})


# --- the sources -------------------------------------------------------------------------------------


class CallCounter:
    """AWS calls made, by `service.Operation`, counted through botocore's `before-call` event (one per API
    call as the caller sees it; botocore's own retries are not counted), and the read units DynamoDB
    reported (`ReturnConsumedCapacity=TOTAL`)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.read_units = 0.0
        self.read_units_minimum = 0.0
        self._lock = threading.Lock()

    def watch(self, client: Any) -> Any:
        client.meta.events.register("before-call", self._count)
        return client

    def _count(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def add_units(self, answer: Mapping[str, Any], keys: int, consistent: bool) -> None:
        """`keys` items asked for: each costs at least half a unit (a whole one strongly consistent), found or
        not, 4 KB or less (larger items cost more: DynamoDB's own figure is `read_units`)."""
        units = sum(float(part.get("CapacityUnits", 0)) for part in answer.get("ConsumedCapacity", []))
        with self._lock:
            self.read_units += units
            self.read_units_minimum += keys * (1.0 if consistent else 0.5)


@dataclass
class Sources:
    """The clients and names one reconciliation reads; tests build it on moto, `sources_for` on a target."""

    dynamodb: Any
    table: str
    s3: Any
    bucket: str
    sqs: Any
    work_queue_url: str
    dlq_url: str | None = None
    replay_queue_url: str | None = None
    raw_prefix: str = RAW_PREFIX
    counter: CallCounter = field(default_factory=CallCounter)

    def __post_init__(self) -> None:
        for client in {id(c): c for c in (self.dynamodb, self.s3, self.sqs)}.values():
            self.counter.watch(client)


def sources_for(target: Any) -> Sources:
    """An environment's sources (`rtp_cli.target.Target`), named by the stack's outputs. The replay queue
    is read when the stack has one (`ReplayQueueUrl`)."""
    return Sources(
        dynamodb=target.client("dynamodb"),
        table=target.output("TableName"),
        s3=target.client("s3"),
        bucket=target.output("RawBucketName"),
        sqs=target.client("sqs"),
        work_queue_url=target.output("WorkQueueUrl"),
        dlq_url=target.outputs.get("DeadLetterQueueUrl"),
        replay_queue_url=target.outputs.get("ReplayQueueUrl"),
    )


# --- reading -----------------------------------------------------------------------------------------


def raw_keys(sources: Sources, window: Window, totals: Totals) -> Iterator[list[tuple[str, str]]]:
    """Pages of (batch id, key) of the window's raw objects, hour by hour, in arrival order."""
    for hour in window.hours():
        prefix = f"{sources.raw_prefix}{hour:%Y/%m/%d/%H}/"
        request: dict[str, Any] = {"Bucket": sources.bucket, "Prefix": prefix, "MaxKeys": LIST_KEYS}
        if hour <= window.since:
            # Keys sort by batch id, batch ids by arrival: start at the window's first millisecond.
            request["StartAfter"] = prefix + ulid_prefix(window.since_ms)
        done = False
        while not done:
            page = sources.s3.list_objects_v2(**request)
            found: list[tuple[str, str]] = []
            for entry in page.get("Contents", []):
                key = str(entry["Key"])
                match = _RAW_KEY.fullmatch(key[len(sources.raw_prefix) :])
                if match is None:
                    totals.unrecognized_keys += 1
                    continue
                batch_id = match.group(5)
                arrived = ulid_millis(batch_id)
                if arrived >= window.until_ms:
                    done = True  # every later key of this hour arrived later still
                    break
                if arrived >= window.since_ms:
                    found.append((batch_id, key))
            if found:
                yield found
            if not page.get("IsTruncated") or done:
                break
            request["ContinuationToken"] = page["NextContinuationToken"]


def _backoff(attempt: int) -> float:
    return random.uniform(0.0, min(2.0, 0.05 * 2**attempt))


def batch_get(
    sources: Sources,
    keys: Sequence[str],
    names: Sequence[str] | None,
    consistent: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, dict[str, Any]]:
    """{pk: item} of the items that exist among `keys` (at most 100), projected on `names` when given.
    Keys DynamoDB leaves unprocessed (throttling, 16 MB) are asked for again with backoff; still unread
    after that: ReconcileError (a key never read must not be reported missing)."""
    request: dict[str, Any] = {"Keys": [{"pk": {"S": key}} for key in keys], "ConsistentRead": consistent}
    if names:
        request["ProjectionExpression"] = ", ".join(f"#a{i}" for i in range(len(names)))
        request["ExpressionAttributeNames"] = {f"#a{i}": name for i, name in enumerate(names)}
    items: dict[str, dict[str, Any]] = {}
    pending: dict[str, Any] = {sources.table: request}
    for attempt in range(UNPROCESSED_ATTEMPTS):
        if attempt:
            sleep(_backoff(attempt - 1))
        answer = sources.dynamodb.batch_get_item(RequestItems=pending, ReturnConsumedCapacity="TOTAL")
        sources.counter.add_units(answer, len(pending[sources.table]["Keys"]), consistent)
        for item in answer.get("Responses", {}).get(sources.table, []):
            items[str(item["pk"]["S"])] = item
        pending = answer.get("UnprocessedKeys") or {}
        if not pending:
            return items
    left = len(pending.get(sources.table, {}).get("Keys", []))
    raise ReconcileError(
        f"DynamoDB left {left} key(s) unread after {UNPROCESSED_ATTEMPTS} attempts (throttled); "
        "run again later, or narrow the window"
    )


def _chunks(values: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def read_many(
    sources: Sources,
    keys: Sequence[str],
    names: Sequence[str] | None,
    consistent: bool = False,
    pool: ThreadPoolExecutor | None = None,
) -> dict[str, dict[str, Any]]:
    """`batch_get` over any number of keys, 100 a call, `READ_WORKERS` calls in flight."""
    unique = list(dict.fromkeys(keys))
    parts = list(_chunks(unique, BATCH_GET_KEYS))
    items: dict[str, dict[str, Any]] = {}
    results: Iterable[dict[str, dict[str, Any]]] = (
        pool.map(lambda part: batch_get(sources, part, names, consistent), parts)
        if pool is not None and len(parts) > 1
        else (batch_get(sources, part, names, consistent) for part in parts)
    )
    for result in results:
        items.update(result)
    return items


_RECORD_NAMES = ("pk", "b", "s")
# What a batch item is read for (not the chunk leases, correlation id or raw key).
_BATCH_NAMES = (
    "pk",
    "batchId",
    "accepted",
    "processed",
    "rejected",
    "duplicates",
    "cc",
    "clientIds",
    "lastError",
    "byRecord",
)


def _found(items: Mapping[str, Mapping[str, Any]]) -> dict[str, Found]:
    return {
        pk[len("REC#") :]: Found(str(item.get("b", {}).get("S", "")), str(item.get("s", {}).get("S", "")))
        for pk, item in items.items()
    }


def _ids_of(
    batches: Sequence[BatchState], ids_items: Mapping[str, Mapping[str, Any]]
) -> dict[str, list[str]]:
    from rtp_pipeline.storage import derived_ids

    ids: dict[str, list[str]] = {}
    for batch in batches:
        item = ids_items.get(f"IDS#{batch.batch_id}") if batch.client_ids else None
        text = item.get("ids", {}).get("S") if item else None
        ids[batch.batch_id] = (
            str(text).split("\n") if text is not None else derived_ids(batch.batch_id, batch.accepted)
        )
    return ids


# --- queues ------------------------------------------------------------------------------------------


def _busy(depths: Mapping[str, Mapping[str, int]]) -> bool:
    return any(sum(depth.values()) for name, depth in depths.items() if name != "deadLetter")


def _queue_depths(sources: Sources) -> dict[str, dict[str, Any]]:
    depths: dict[str, dict[str, Any]] = {"work": queue_depth(sources.sqs, sources.work_queue_url)}
    if sources.replay_queue_url:
        depths["replay"] = queue_depth(sources.sqs, sources.replay_queue_url)
    return depths


class DeadLetters:
    """The batch ids of the DLQ's claim checks, received with VisibilityTimeout=0 (nothing consumed), peeked
    the first time a batch of the window is not complete: a healthy window costs no ReceiveMessage, whatever
    old messages the DLQ holds."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.info: dict[str, Any] = {"checked": False}
        self._batch_ids: set[str] | None = None
        if sources.dlq_url:
            self.info = {
                "checked": True,
                **queue_depth(sources.sqs, sources.dlq_url),
                "peeked": False,
                "sampled": 0,
            }

    def holds(self, batch: BatchState) -> bool:
        if batch.complete or not self.info["checked"]:
            return False
        if self._batch_ids is None:
            self._batch_ids = self._peek()
        return batch.batch_id in self._batch_ids

    def _peek(self) -> set[str]:
        from rtp_cli.operate.dlq import DeadLetterQueue

        if not self.info["visible"]:
            return set()
        dlq = DeadLetterQueue(self.sources.sqs, str(self.sources.dlq_url), "")
        messages = dlq.peek(min(self.info["visible"], DLQ_SAMPLE_MAX))
        self.info["peeked"], self.info["sampled"] = True, len(messages)
        return {message.batch_id for message in messages if message.batch_id}


# --- the service -------------------------------------------------------------------------------------


@dataclass
class _Suspect:
    batch: BatchState
    ids: list[str] | None
    found: dict[str, Found] | None  # what the eventually consistent read found of `ids`


def _found_of(ids: Sequence[str] | None, found: Mapping[str, Found] | None) -> dict[str, Found] | None:
    if ids is None or found is None:
        return None
    return {record_id: found[record_id] for record_id in ids if record_id in found}


@dataclass
class _Group:
    """Batches read together (at most `BATCH_GROUP`)."""

    batches: list[BatchState]
    ids: dict[str, list[str]] | None
    found: dict[str, Found] | None


def reconcile(
    sources: Sources,
    window: Window,
    max_ids: int = 100,
    counts_only: bool = False,
    workers: int = READ_WORKERS,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Count the window hop by hop and find its gaps; the report `render_lines` prints and --json emits.
    `progress(raw objects, records accepted)` is called after each group of batches read."""
    if max_ids < 0:
        raise ReconcileError("--max-ids: at least 0")
    started = time.monotonic()
    totals = Totals()
    queues = _queue_depths(sources)
    dead = DeadLetters(sources)
    queues["deadLetter"] = dead.info
    queued = _busy(queues)
    suspects: list[_Suspect] = []  # stuck, missing or mismatched: read again, strongly consistent
    with ThreadPoolExecutor(max(workers, 1), thread_name_prefix="reconcile") as pool:
        for page in raw_keys(sources, window, totals):
            totals.raw_objects += len(page)
            for part in _chunks(page, BATCH_GROUP):
                group = _read_group(sources, part, totals, counts_only, pool)
                for batch in group.batches:
                    ids = group.ids[batch.batch_id] if group.ids is not None else None
                    verdict = classify(batch, ids, group.found, queued, dead.holds(batch))
                    if verdict.gap and verdict.state != DEAD_LETTERED:
                        suspects.append(_Suspect(batch, ids, _found_of(ids, group.found)))
                    else:
                        totals.add(verdict, max_ids)
                if progress is not None:
                    progress(totals.raw_objects, totals.records_accepted)
        if suspects:
            _settle(sources, suspects, totals, dead, queues, max_ids, counts_only, pool)
    return _report(window, totals, queues, sources.counter, counts_only, max_ids, time.monotonic() - started)


def _read_group(
    sources: Sources,
    part: Sequence[tuple[str, str]],
    totals: Totals,
    counts_only: bool,
    pool: ThreadPoolExecutor,
) -> _Group:
    from rtp_pipeline.storage import batch_pk

    # A keyed retry's raw object names its own batch id, whose item is its key's (the first request's
    # batch): read once, and not this raw object's batch.
    items = read_many(sources, sorted({batch_pk(batch_id) for batch_id, _ in part}), _BATCH_NAMES, pool=pool)
    batches: list[BatchState] = []
    for batch_id, raw_key in part:
        item = items.get(batch_pk(batch_id))
        if item is not None and item.get("batchId", {}).get("S", batch_id) != batch_id:
            item = None
        if item is None:
            totals.not_accepted += 1
            if len(totals.not_accepted_keys) < NOT_ACCEPTED_SHOWN:
                totals.not_accepted_keys.append(raw_key)
        else:
            batches.append(BatchState.from_item(item))
    if counts_only or not batches:
        return _Group(_counted_by_record(sources, batches, None, False, pool), None, None)
    with_client_ids = [f"IDS#{batch.batch_id}" for batch in batches if batch.client_ids]
    ids = _ids_of(batches, read_many(sources, with_client_ids, ("pk", "ids"), pool=pool))
    record_keys = [f"REC#{record_id}" for batch_ids in ids.values() for record_id in batch_ids]
    found = _found(read_many(sources, record_keys, _RECORD_NAMES, pool=pool))
    return _Group(_counted_by_record(sources, batches, found, False, pool), ids, found)


def _counted_by_record(
    sources: Sources,
    batches: list[BatchState],
    found: Mapping[str, Found] | None,
    consistent: bool,
    pool: ThreadPoolExecutor,
) -> list[BatchState]:
    """`batches` with each `by_record` one counted from its record's item: from `found`, or (with
    --counts-only) read here, one BatchGetItem key per such batch (half a read unit each)."""
    single = [f"{batch.batch_id}-0" for batch in batches if batch.by_record]
    if not single:
        return batches
    if found is None:
        found = _found(read_many(sources, [f"REC#{rid}" for rid in single], _RECORD_NAMES, consistent, pool))
    return [batch.counted_by(found.get(f"{batch.batch_id}-0")) for batch in batches]


def _settle(
    sources: Sources,
    suspects: list[_Suspect],
    totals: Totals,
    dead: DeadLetters,
    queues: dict[str, dict[str, Any]],
    max_ids: int,
    counts_only: bool,
    pool: ThreadPoolExecutor,
) -> None:
    """Batches that look like gaps, read again strongly consistent (an eventually consistent read may miss a
    write of the last second): their batch items, and the record items the first read did not find (the
    pipeline never deletes one). The queues are read again too: a batch that arrived during the run is
    pending, not stuck."""
    from rtp_pipeline.storage import batch_pk

    queues.update(_queue_depths(sources))
    queued = _busy(queues)
    for start in range(0, len(suspects), BATCH_GROUP):
        group = suspects[start : start + BATCH_GROUP]
        pks = sorted({batch_pk(suspect.batch.batch_id) for suspect in group})
        items = read_many(sources, pks, _BATCH_NAMES, True, pool)
        for suspect in group:
            item = items.get(batch_pk(suspect.batch.batch_id))
            suspect.batch = BatchState.from_item(item) if item else suspect.batch
        if not counts_only:
            keys = [
                f"REC#{record_id}"
                for suspect in group
                for record_id in suspect.ids or []
                if suspect.found is not None and record_id not in suspect.found
            ]
            late = _found(read_many(sources, keys, _RECORD_NAMES, True, pool))
            for suspect in group:
                if suspect.found is not None:
                    suspect.found.update(_found_of(suspect.ids, late) or {})
        for suspect, batch in zip(
            group,
            _counted_by_record(
                sources, [suspect.batch for suspect in group], _merged_found(group), True, pool
            ),
            strict=True,
        ):
            suspect.batch = batch
        for suspect in group:
            verdict = classify(suspect.batch, suspect.ids, suspect.found, queued, dead.holds(suspect.batch))
            totals.add(verdict, max_ids)


def _merged_found(group: Sequence[_Suspect]) -> dict[str, Found] | None:
    """What the suspects' record reads found, together (None with --counts-only)."""
    if any(suspect.found is None for suspect in group):
        return None
    return {record_id: item for suspect in group for record_id, item in (suspect.found or {}).items()}


def _report(
    window: Window,
    totals: Totals,
    queues: dict[str, dict[str, Any]],
    counter: CallCounter,
    counts_only: bool,
    max_ids: int,
    seconds: float,
) -> dict[str, Any]:
    def state(name: str) -> dict[str, int]:
        return {"batches": totals.by_state[name]["batches"], "records": totals.by_state[name]["records"]}

    stored = {name: totals.stored[name] for name in ("processed", "rejected", "duplicates")}
    ok = totals.gap_batch_count == 0
    return {
        "ok": ok,
        "window": {"since": _iso(window.since), "until": _iso(window.until), "hours": len(window.hours())},
        "countsOnly": counts_only,
        "counts": {
            "rawObjects": totals.raw_objects,
            "notAccepted": totals.not_accepted,
            "requestsAccepted": totals.requests_accepted,
            "recordsAccepted": totals.records_accepted,
            "stored": {**stored, "total": sum(stored.values())},
            "verified": None
            if counts_only
            else {name: totals.verified[name] for name in ("processed", "rejected", "duplicates", "missing")},
            "complete": {"batches": totals.by_state[OK]["batches"]},
            "pending": state(PENDING),
            "deadLettered": state(DEAD_LETTERED),
            "stuck": state(STUCK),
            "mismatchedBatches": totals.mismatched_batches,
        },
        "queues": queues,
        "gaps": {"batches": totals.gap_batch_count, "records": totals.gap_records},
        "gapBatches": totals.gap_batches,
        "gapBatchesMore": max(totals.gap_batch_count - len(totals.gap_batches), 0),
        "missing": totals.missing,
        "missingMore": max(totals.missing_count - len(totals.missing), 0),
        "maxIds": max_ids,
        "notAcceptedKeys": totals.not_accepted_keys,
        "unrecognizedKeys": totals.unrecognized_keys,
        "cost": {
            "calls": dict(sorted(counter.calls.items())),
            "readUnitsReported": round(counter.read_units, 2),
            "readUnitsMinimum": round(counter.read_units_minimum, 2),
            "seconds": round(seconds, 3),
        },
    }


# --- cost at scale -----------------------------------------------------------------------------------


def estimate_cost(
    records: int, records_per_request: int, hours: int = 1, counts_only: bool = False
) -> dict[str, float]:
    """Calls, read units and dollars of one reconciliation of `records` records (items under 4 KB, API ids,
    an empty DLQ), from the rules in the module docstring and the prices in `rtp_cli.pricing`."""
    from rtp_cli.pricing import price

    requests = math.ceil(records / records_per_request)
    lists = math.ceil(requests / LIST_KEYS) + hours
    batch_gets = math.ceil(requests / BATCH_GET_KEYS)
    read_units = requests * 0.5  # eventually consistent, one batch item (under 4 KB) each
    if not counts_only:
        batch_gets += math.ceil(records / BATCH_GET_KEYS)
        read_units += records * 0.5
    queue_calls = 3
    usd = (
        lists * (price("s3.put_request").usd or 0.0)
        + read_units * (price("dynamodb.read_request_unit").usd or 0.0)
        + queue_calls * (price("sqs.request").usd or 0.0)
    )
    return {
        "requests": requests,
        "s3ListCalls": lists,
        "dynamodbBatchGetCalls": batch_gets,
        "readUnits": read_units,
        "sqsCalls": queue_calls,
        "usd": usd,
    }


# --- rendering ---------------------------------------------------------------------------------------


def render_lines(report: dict[str, Any], env: str) -> list[str]:
    """The report for people: rich markup lines (values escaped)."""
    from rich.markup import escape

    counts, window = report["counts"], report["window"]
    lines = [
        f"[bold]reconcile {escape(env)}[/bold]: requests that arrived from {window['since']} to "
        f"{window['until']} ({window['hours']} hour(s) of raw objects listed)"
    ]

    def row(label: str, requests: Any, records: Any = "", style: str = "") -> None:
        text = f"  {label:<52} {requests!s:>10} {records!s:>12}"
        lines.append(f"[{style}]{text}[/{style}]" if style else text)

    row("", "requests", "records")
    row("raw objects (every request that reached ingest)", counts["rawObjects"])
    row(
        "  refused or failed requests (not accepted)",
        counts["notAccepted"],
        style="yellow" if counts["notAccepted"] else "",
    )
    row("accepted (batch items)", counts["requestsAccepted"], counts["recordsAccepted"])
    stored = counts["stored"]
    row("stored, by the batch counters: processed", "", stored["processed"])
    row("                                rejected", "", stored["rejected"])
    row("                                duplicates", "", stored["duplicates"])
    verified = counts["verified"]
    if verified is None:
        row("verified against the record items", "skipped (--counts-only)")
    else:
        row("verified against the record items: processed", "", verified["processed"])
        row("                                   rejected", "", verified["rejected"])
        row("                                   duplicates", "", verified["duplicates"])
        row("                                   not in the table", "", verified["missing"])
    row("still queued or in flight (pending)", counts["pending"]["batches"], counts["pending"]["records"])
    dead = counts["deadLettered"]
    row("dead-lettered", dead["batches"], dead["records"], "red" if dead["batches"] else "")
    stuck = counts["stuck"]
    row(
        "stuck (chunks not counted, nothing queued)",
        stuck["batches"],
        stuck["records"],
        "red" if stuck["batches"] else "",
    )
    queues = report["queues"]
    described = []
    for name in ("work", "replay"):
        if name in queues:
            depth = queues[name]
            described.append(
                f"{name} queue {depth['visible']} visible, {depth['inFlight']} in flight, "
                f"{depth['delayed']} delayed"
            )
    dlq = queues.get("deadLetter", {})
    if dlq.get("checked"):
        peeked = f"{dlq['sampled']} peeked" if dlq["peeked"] else "not peeked: no batch needed it"
        described.append(f"DLQ {dlq['visible']} visible ({peeked})")
    lines.append("  queues: " + "; ".join(described))
    if dlq.get("peeked") and dlq["sampled"] < dlq["visible"]:
        lines.append(
            f"  [yellow]the DLQ holds {dlq['visible']} messages and {dlq['sampled']} were peeked: a batch "
            "counted as pending may be dead-lettered (see `rtp dlq peek`)[/yellow]"
        )
    if report["notAcceptedKeys"]:
        lines.append(
            "  not accepted (refused 4xx, failed before enqueueing, or an idempotent retry answered from an "
            "earlier batch): "
            + ", ".join(escape(key) for key in report["notAcceptedKeys"])
            + (" ..." if counts["notAccepted"] > len(report["notAcceptedKeys"]) else "")
        )
    if report["ok"]:
        lines.append("[green]every accepted record is accounted for[/green]")
    else:
        gaps = report["gaps"]
        lines.append(
            f"[red]gaps: {gaps['records']} record(s) in {gaps['batches']} batch(es) not accounted for[/red]"
        )
        for batch in report["gapBatches"]:
            problem = f"; {escape(batch['problem'])}" if batch["problem"] else ""
            last_error = f"; last error: {escape(batch['lastError'][:200])}" if batch["lastError"] else ""
            lines.append(
                f"  batch {escape(batch['batchId'])} {batch['state']}: accepted {batch['accepted']}, "
                f"chunks counted {batch['chunksCounted']}, unaccounted {batch['unaccounted']}{problem}"
                f"{last_error}"
            )
        if report["gapBatchesMore"]:
            lines.append(f"  ... and {report['gapBatchesMore']} more batch(es) (raise --max-ids)")
        for missing in report["missing"]:
            lines.append(
                f"  [red]{escape(missing['recordId'])}[/red] batch {escape(missing['batchId'])}: "
                f"{escape(missing['why'])}"
            )
        if report["missingMore"]:
            lines.append(f"  ... and {report['missingMore']} more record id(s) (raise --max-ids)")
        if report["countsOnly"] and report["gaps"]["records"]:
            lines.append("  run without --counts-only to list the record ids")
    cost = report["cost"]
    calls = ", ".join(f"{name} {count}" for name, count in cost["calls"].items())
    lines.append(
        f"[dim]calls: {calls}; DynamoDB read units: at least {cost['readUnitsMinimum']} by the 4 KB rule, "
        f"{cost['readUnitsReported']} as the endpoint reported them; {cost['seconds']} s[/dim]"
    )
    return lines


# --- the command -------------------------------------------------------------------------------------


def reconcile_command(
    since: SinceOption,
    env: EnvOption = "local",
    until: UntilOption = None,
    max_ids: Annotated[
        int, typer.Option("--max-ids", min=0, help="List at most this many missing ids (and gap batches).")
    ] = 100,
    counts_only: Annotated[
        bool,
        typer.Option("--counts-only", help="Counters and queues only: no per-record reads (O(batches))."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object (for machines).")] = False,
    profile: ProfileOption = None,
) -> None:
    """Account for every record that arrived in a window: counts per hop; exit 1 on any gap, with the ids."""
    import contextlib

    from rtp_cli.console import console, err
    from rtp_cli.target import ConfigError, TargetError, resolve_target

    try:
        window = parse_window(since, until)
        target = resolve_target(env, profile)
        status = err.status("reading the window...") if err.is_terminal else contextlib.nullcontext()
        with status as shown:

            def progress(raw_objects: int, records: int) -> None:
                if shown is not None:
                    shown.update(f"{raw_objects:,} requests, {records:,} records accepted read so far...")

            report = reconcile(sources_for(target), window, max_ids, counts_only, progress=progress)
    except (ConfigError, TargetError, ReconcileError) as error:
        fail(str(error))
    except (ClientError, BotoCoreError) as error:
        fail(f"cannot read the {env} environment: {error}")
    if as_json:
        print(json.dumps(report, ensure_ascii=False, default=str))
    else:
        for line in render_lines(report, env):
            console.print(line, highlight=False, soft_wrap=True)
    if not report["ok"]:
        raise typer.Exit(1)
