"""`rtp replay`: run raw requests kept in S3 through the current transform again (issue 12).

Every request is kept raw in the bucket before it is parsed (`raw/YYYY/MM/DD/HH/<batchId>.json`,
rtp_pipeline.storage.RawStore.key_for), and its batch item (`BATCH#<batchId>`) says where it is, how many
records it accepted and how its counters stand. A replay sends one claim check per selected request to the
stack's replay queue (`ReplayQueueUrl`), with a `replay` member (rtp_pipeline.storage.ReplayRequest): the
processor polls that queue through its own event source mapping (`processing.replay_concurrency`
pollers), so live traffic on the work queue never waits behind a replay, runs the records the batch stored
whose current item matches the filters through the current transform, replaces their items and moves the
batch counters by the exact delta. It is idempotent per replay id: a message sent twice (a resumed run, an
SQS redelivery) never replays a record twice. Each chunk of 100 records a replay has settled is added to
the batch item's string set `rc` as `<replayId>:<chunk>`: `--wait` polls for those.

Selection (`plan_replay`):
- `--since/--until`: the raw prefixes of every hour of the window are listed (ListObjectsV2); a request is
  kept when its batch item exists (a raw object without one was a refused request: counted, skipped).
- `--batch ID` (repeatable): those batches (an unknown id stops the run before anything is sent).
- `--status REJECTED [--reason TEXT]` with a window: the REJECTED records processed in the window, read
  through the API's sparse index listing (rtp_cli.records.list_records), give the set of batches, each sent
  once with the filter (status, reason, processedFrom/To = the window). `--status PROCESSED` (not indexed)
  filters the requests a window or `--batch` selected.

The service has no terminal: the command at the end of this module renders it (progress bar, summary).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from rtp_cli.errors import fail
from rtp_cli.options import EnvOption, ProfileOption, UntilOption

# The raw prefix of the stack (stack.data.RAW_PREFIX, the functions' RAW_PREFIX variable): kept here so the
# CLI does not load the CDK; tests/operate/test_replay_unit.py checks it against the synthesized template.
RAW_PREFIX = "raw/"
# Records the processor counts together (rtp_pipeline.storage.CHUNK_RECORDS): a replay settles chunks.
CHUNK_RECORDS = 100
# SendMessageBatch takes at most 10 entries per call:
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html
SEND_BATCH_ENTRIES = 10
# BatchGetItem reads at most 100 keys per call:
# https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html
BATCH_GET_KEYS = 100
# The default pace: records per second sent for replay. A tenth of the table's design rate
# (rtp_pipeline.storage.DESIGN_RECORDS_PER_SECOND, 10,000 records/s): a replayed record costs the writes of
# a new one (its item, its index entry when REJECTED), and live traffic keeps nine tenths of the capacity
# the table was designed for. The replay queue's own pollers bound how fast it is consumed anyway: a faster
# send only makes the replay queue longer (it has no lag alarm; the work queue's ProcessingLag is untouched).
DEFAULT_RATE = 1000.0
SEND_ATTEMPTS = 5  # entries SendMessageBatch reports as failed are sent again this many times
DEFAULT_WAIT_SECONDS = 600.0
WAIT_POLL_SECONDS = 1.0
# A ULID, or a keyed batch id (`K` after the time): rtp_pipeline.storage.BATCH_ID.
BATCH_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{10}K?[0-9A-HJKMNP-TV-Z]{16}")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
STATUSES = ("PROCESSED", "REJECTED")
MAX_REASON_CHARS = 500  # the longest --reason a replay message carries (rtp_pipeline.storage.ReplayRequest)
MAX_LISTED_REJECTED = 10_000_000  # rows read from the REJECTED listing at most (a bound, not a limit)
_COUNTERS = ("processed", "rejected", "duplicates")

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class ReplayError(Exception):
    """The replay cannot go on: `message` says why; exit code 2 (usage, nothing sent) or 1."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message, self.exit_code = message, exit_code


# --- where the data is ---------------------------------------------------------------------------------
@dataclass
class Sources:
    """The clients and names one replay uses; tests build it against moto or a local target."""

    env: str
    table: Any  # rtp_pipeline.storage.PipelineTable (its `db` client and table `name`)
    s3: Any
    bucket: str
    sqs: Any
    queue_url: str
    config: Any | None = None  # stack.config.EnvironmentConfig: the retention the warning reads
    fetch: Callable[[str], Any] | None = None  # GET on the API (rtp_cli.records.Fetch): --status REJECTED


def sources_for(target: Any) -> Sources:
    """The sources of an environment (`rtp_cli.target.Target`), named by the stack's outputs."""
    from rtp_pipeline.storage import PipelineTable

    from rtp_cli.operate.api_client import ApiClient
    from stack.config import load_config

    client = ApiClient(target.api_url, target.region, target.credentials)
    return Sources(
        env=target.env,
        table=PipelineTable(target.client("dynamodb"), target.output("TableName")),
        s3=target.client("s3"),
        bucket=target.output("RawBucketName"),
        sqs=target.client("sqs"),
        queue_url=target.output("ReplayQueueUrl"),
        config=load_config(target.env),
        fetch=lambda path: client.request("GET", path),
    )


# --- selection -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    """What the user asked for, as typed (relative times are resolved by `plan_replay`)."""

    since: str | None = None
    until: str | None = None
    batch_ids: tuple[str, ...] = ()
    status: str | None = None
    reason: str | None = None

    def key(self, env: str) -> str:
        """The journal's name: the same command line in the same environment finds its unfinished run."""
        material = json.dumps(
            {"env": env, **asdict(self), "batch_ids": sorted(self.batch_ids)}, sort_keys=True
        )
        return hashlib.sha256(material.encode("utf-8")).hexdigest()[:24]


def check_selection(selection: Selection) -> None:
    """Refuse an incomplete or contradictory selection before anything is read (exit 2)."""
    if selection.since is None and not selection.batch_ids:
        if selection.until is not None:
            raise ReplayError("--until needs --since (the window's start)")
        raise ReplayError(
            "select what to replay: --since [--until], --batch ID, or --status REJECTED --since"
        )
    if selection.until is not None and selection.since is None:
        raise ReplayError("--until needs --since (the window's start)")
    if selection.status is not None and selection.status not in STATUSES:
        raise ReplayError(f"--status: {' or '.join(STATUSES)}, not {selection.status!r}")
    if selection.reason is not None:
        if selection.status != "REJECTED":
            raise ReplayError("--reason filters REJECTED records: add --status REJECTED")
        if not selection.reason.strip():
            raise ReplayError("--reason: give some text the rejection reason contains")
        if len(selection.reason) > MAX_REASON_CHARS:
            raise ReplayError(f"--reason: at most {MAX_REASON_CHARS} characters (a reason is at most 2,000)")
    bad = [batch_id for batch_id in selection.batch_ids if not BATCH_ID.fullmatch(batch_id)]
    if bad:
        raise ReplayError(
            f"--batch {bad[0][:60]!r}: a batch id is 26 or 27 characters of Crockford base32 (as POST "
            "/records answered)"
        )


def resolve_window(since: str, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    """(since, until) as moments: RFC 3339 or a duration before now (30m, 1h, 2d), parsed by the same code
    as `rtp records` and GET /records (rtp_pipeline.query.listing_window: at most 400 days)."""
    from rtp_pipeline.errors import ApiError
    from rtp_pipeline.query import listing_window

    params = {"since": since, **({"until": until} if until is not None else {})}
    try:
        window = listing_window(params, now)
    except ApiError as error:
        raise ReplayError("--" + error.message) from None
    except OverflowError:  # a duration before year 1 (999999d): the parser lets datetime raise
        raise ReplayError(f"--since/--until: {since!r} / {until!r} reach before the year 1") from None
    return _moment(window.since), _moment(window.until)


@dataclass
class Candidate:
    """One raw request to replay, from its batch item."""

    batch_id: str
    key: str
    correlation_id: str
    received_at: str
    records: int  # accepted: what the processor reads and the rate limit counts
    bytes: int
    matching: int | None = None  # REJECTED records of the listing in it (--status REJECTED)
    counts: dict[str, int] = field(default_factory=dict)  # processed/rejected/duplicates at selection
    by_record: bool = False  # the batch item's `byRecord`: carried on the replay's claim check

    @property
    def chunks(self) -> int:
        return math.ceil(self.records / CHUNK_RECORDS)

    def row(self) -> list[Any]:
        counts = [self.counts.get(name, 0) for name in _COUNTERS]
        return [
            self.batch_id,
            self.key,
            self.correlation_id,
            self.received_at,
            self.records,
            self.bytes,
            *counts,
        ]

    @classmethod
    def from_row(cls, row: list[Any]) -> Candidate:
        batch_id, key, correlation_id, received_at, records, size, *counts = row
        return cls(
            str(batch_id),
            str(key),
            str(correlation_id),
            str(received_at),
            int(records),
            int(size),
            counts=dict(zip(_COUNTERS, map(int, counts), strict=True)),
        )


@dataclass
class Plan:
    """What a replay sends: the filter every message carries and the requests, oldest first."""

    env: str
    selection: Selection
    status: str | None = None
    reason: str | None = None
    processed_from: str | None = None
    processed_to: str | None = None
    since: str | None = None  # the resolved window (receive time, or processed time for REJECTED)
    until: str | None = None
    candidates: list[Candidate] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # why -> requests left out
    notes: list[str] = field(default_factory=list)
    warning: str | None = None  # the window reaches past the retention
    listed_records: int | None = None  # REJECTED records of the listing that matched

    @property
    def requests(self) -> int:
        return len(self.candidates)

    @property
    def records(self) -> int:
        return sum(candidate.records for candidate in self.candidates)

    @property
    def bytes(self) -> int:
        return sum(candidate.bytes for candidate in self.candidates)

    def filter(self) -> dict[str, str | None]:
        return {
            "status": self.status,
            "reason": self.reason,
            "processedFrom": self.processed_from,
            "processedTo": self.processed_to,
        }

    def summary(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "requests": self.requests,
            "records": self.records,
            "bytes": self.bytes,
            "matchingRecords": self.listed_records,
            "filter": {name: value for name, value in self.filter().items() if value is not None},
            "since": self.since,
            "until": self.until,
            "skipped": dict(self.skipped),
            "notes": list(self.notes),
            "warning": self.warning,
        }


def plan_replay(sources: Sources, selection: Selection, now: datetime | None = None) -> Plan:
    """The requests a selection names, with their size. Reads; sends nothing."""
    check_selection(selection)
    now = now or datetime.now(UTC)
    plan = Plan(env=sources.env, selection=selection, status=selection.status, reason=selection.reason)
    window = resolve_window(selection.since, selection.until, now) if selection.since is not None else None
    if window is not None:
        plan.since, plan.until = _iso(window[0]), _iso(window[1])
        if sources.config is not None:  # what the environment keeps (stack/retention.py, no CDK loaded)
            from stack.retention import replay_window, storage_note, window_check

            kept = replay_window(sources.config)
            plan.warning = window_check(kept, window[0], now)
            colder = storage_note(kept, window[0], now)
            if colder:
                plan.notes.append(colder)
    if selection.status == "REJECTED" and window is not None and not selection.batch_ids:
        # The window is the records' processed time; a request processed in it may have arrived earlier.
        plan.processed_from, plan.processed_to = _processed_window(window)
        matching = _rejected_batches(sources, plan.since or "", plan.until or "", selection.reason)
        plan.listed_records = sum(matching.values())
        items = _batch_items(sources.table, sorted(matching))
        gone = sorted(set(matching) - set(items))
        if gone:
            plan.skipped["batch item expired"] = len(gone)
        plan.candidates = _with_sizes(sources, plan, [items[batch_id] for batch_id in sorted(items)])
        for candidate in plan.candidates:
            candidate.matching = matching[candidate.batch_id]
    elif selection.batch_ids:
        batch_ids = sorted(set(selection.batch_ids))
        items = _batch_items(sources.table, batch_ids)
        unknown = [batch_id for batch_id in batch_ids if batch_id not in items]
        if unknown:
            raise ReplayError(
                f"no batch {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''} in {sources.env} "
                "(expired, never accepted, or mistyped); nothing was sent",
                1,
            )
        chosen = [items[batch_id] for batch_id in batch_ids]
        if window is not None and selection.status == "REJECTED":  # their records REJECTED in the window
            plan.processed_from, plan.processed_to = _processed_window(window)
        elif window is not None:  # those of the batches received in the window
            chosen = [item for item in chosen if window[0] <= _moment(str(item["receivedAt"])) <= window[1]]
            if len(chosen) < len(batch_ids):
                plan.skipped["received outside the window"] = len(batch_ids) - len(chosen)
        plan.candidates = _with_sizes(sources, plan, chosen)
    else:
        assert window is not None
        plan.candidates = _by_window(sources, plan, window[0], window[1])
    plan.candidates.sort(key=lambda candidate: (candidate.received_at, candidate.batch_id))
    if plan.skipped.get("no batch item"):
        plan.notes.append(
            f"{plan.skipped['no batch item']} raw object(s) in the window have no batch item: refused "
            "requests (ingest keeps every body before validating it; a refused one never got a batch), "
            "retries that an Idempotency-Key answered with the first request's batch, or batches whose "
            "item expired (retention.record_ttl_days); they are not replayed"
        )
    if plan.skipped.get("raw object gone"):
        plan.notes.append(
            f"{plan.skipped['raw object gone']} batch(es) have no raw object any more "
            "(retention.raw_objects_days): they cannot be replayed"
        )
    if plan.skipped.get("batch item expired"):
        plan.notes.append(
            f"{plan.skipped['batch item expired']} batch(es) of the listing have no batch item any more"
        )
    return plan


def hour_prefixes(since: datetime, until: datetime, prefix: str = RAW_PREFIX) -> list[str]:
    """The raw prefixes (`raw/YYYY/MM/DD/HH/`) of every hour from `since` to `until`, both included."""
    first = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    last = until.astimezone(UTC)
    prefixes = []
    hour = first
    while hour <= last:
        prefixes.append(f"{prefix}{hour:%Y/%m/%d/%H}/")
        hour += timedelta(hours=1)
    return prefixes


def batch_time(batch_id: str) -> datetime:
    """When a batch was received: a ULID's first 10 characters are its millisecond time."""
    value = 0
    for character in batch_id[:10]:
        value = value * 32 + _CROCKFORD.index(character)
    return datetime.fromtimestamp(value / 1000, UTC)


def _by_window(sources: Sources, plan: Plan, since: datetime, until: datetime) -> list[Candidate]:
    sizes: dict[str, tuple[str, int]] = {}  # batch id -> (key, bytes)
    paginator = sources.s3.get_paginator("list_objects_v2")
    for prefix in hour_prefixes(since, until):
        for page in paginator.paginate(Bucket=sources.bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                key = str(entry["Key"])
                name = key.rsplit("/", 1)[-1].removesuffix(".json")
                if not BATCH_ID.fullmatch(name):
                    plan.skipped["not a raw request"] = plan.skipped.get("not a raw request", 0) + 1
                    continue
                if since <= batch_time(name) <= until:  # the first and last hours hold others too
                    sizes[name] = (key, int(entry.get("Size", 0)))
    items = _batch_items(sources.table, sorted(sizes))
    missing = len(sizes) - len(items)
    if missing:
        plan.skipped["no batch item"] = missing
    candidates = []
    for batch_id, item in items.items():
        candidate = _candidate(item, sizes[batch_id][1])
        if candidate.key != sizes[batch_id][0]:  # never expected: the item names the object it came with
            candidate.key = sizes[batch_id][0]
        candidates.append(candidate)
    return candidates


def _candidate(item: dict[str, Any], size: int) -> Candidate:
    return Candidate(
        batch_id=str(item["batchId"]),
        key=str(item.get("rawKey", "")),
        correlation_id=str(item.get("correlationId", "")),
        received_at=str(item.get("receivedAt", "")),
        records=int(item.get("accepted", 0)),
        bytes=size,
        counts={name: int(item.get(name, 0)) for name in _COUNTERS},
        by_record=item.get("byRecord") is True,
    )


def _with_sizes(sources: Sources, plan: Plan, items: list[dict[str, Any]]) -> list[Candidate]:
    """Candidates whose raw object is still there (HeadObject: its size)."""
    candidates = []
    for item in items:
        try:
            head = sources.s3.head_object(Bucket=sources.bucket, Key=str(item.get("rawKey", "")))
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) not in ("404", "NoSuchKey", "NotFound"):
                raise
            plan.skipped["raw object gone"] = plan.skipped.get("raw object gone", 0) + 1
            continue
        candidates.append(_candidate(item, int(head.get("ContentLength", 0))))
    return candidates


def _rejected_batches(sources: Sources, since: str, until: str, reason: str | None) -> dict[str, int]:
    """batch id -> REJECTED records processed in [since, until] (whose reason contains `reason`)."""
    from rtp_cli.records import RecordsError, list_records

    if sources.fetch is None:
        raise ReplayError("--status REJECTED reads the API's GET /records listing: no API in these sources")
    try:
        listing = list_records(sources.fetch, "REJECTED", since, until, MAX_LISTED_REJECTED, "oldest")
    except RecordsError as error:
        raise ReplayError(error.message, error.exit_code) from None
    if listing.more:
        raise ReplayError(f"more than {MAX_LISTED_REJECTED:,} REJECTED records in the window: narrow it", 1)
    matching: dict[str, int] = {}
    for row in listing.rows:
        if reason is not None and reason not in str(row.get("reason", "")):
            continue
        batch_id = str(row.get("batchId", ""))
        if batch_id:
            matching[batch_id] = matching.get(batch_id, 0) + 1
    return matching


def _batch_items(table: Any, batch_ids: list[str], sleep: Sleep = time.sleep) -> dict[str, dict[str, Any]]:
    """batch id -> its batch item (the attributes a replay needs), 100 keys per BatchGetItem."""
    from rtp_pipeline.storage import batch_pk, counts_of_record, deserialize

    found: dict[str, dict[str, Any]] = {}
    names = {"#p": "processed", "#r": "rejected", "#d": "duplicates"}  # reserved words among them
    projection = "pk, batchId, accepted, #p, #r, #d, rawKey, correlationId, receivedAt, rc, byRecord"
    # A keyed retry's raw object names its own batch id, whose item is its key's: read once, and kept
    # only under the id the item names (BatchGetItem refuses duplicate keys).
    pks = sorted({batch_pk(batch_id) for batch_id in batch_ids})
    for start in range(0, len(pks), BATCH_GET_KEYS):
        keys = [{"pk": {"S": pk}} for pk in pks[start : start + BATCH_GET_KEYS]]
        request: dict[str, Any] = {
            table.name: {
                "Keys": keys,
                "ProjectionExpression": projection,
                "ExpressionAttributeNames": names,
                "ConsistentRead": True,
            }
        }
        for attempt in range(10):
            answer = table.db.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(table.name, []):
                values = deserialize(item)
                found[str(values["batchId"])] = values
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                break
            # Unprocessed keys are asked again after a backoff (BatchGetItem's documented contract).
            sleep(min(1.0, 0.05 * 2**attempt))
        else:
            raise ReplayError("DynamoDB kept some batch items unread (throttled): try again", 1)
    wanted = set(batch_ids)
    found = {batch_id: item for batch_id, item in found.items() if batch_id in wanted}
    # A batch of one API-assigned record keeps no counters: its record's item is its count.
    single = {batch_id: f"{batch_id}-0" for batch_id, item in found.items() if item.get("byRecord")}
    if single:
        held = table.stored_records(list(single.values()))
        for batch_id, record_id in single.items():
            found[batch_id].update(counts_of_record(batch_id, held.get(record_id)))
    return found


# --- pacing --------------------------------------------------------------------------------------------
class TokenBucket:
    """`rate` records per second, with a burst of one second's worth (at least one message). Each message
    costs its record count; `take` waits (through the injected `sleep`) until the bucket holds that many."""

    def __init__(self, rate: float, clock: Clock = time.monotonic, sleep: Sleep = time.sleep) -> None:
        if rate < 0 or math.isnan(rate):
            raise ReplayError("--rate: records per second, 0 for no limit")
        self.rate, self.clock, self.sleep = rate, clock, sleep
        self.capacity = rate
        self.tokens = rate
        self.last = clock()
        self.waited = 0.0

    def take(self, records: int) -> None:
        if self.rate == 0 or records <= 0:
            return
        needed = min(float(records), max(self.capacity, 1.0))  # a message larger than the burst still goes
        self._refill()
        if self.tokens < needed:
            delay = (needed - self.tokens) / self.rate
            self.sleep(delay)
            self.waited += delay
            self._refill()
        self.tokens -= records  # may go below zero: the next message waits for the debt

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now


# --- the journal ---------------------------------------------------------------------------------------
class JournalError(ReplayError):
    """An unfinished replay of the same selection exists, or a journal cannot be read (exit 2)."""


def new_replay_id(now: datetime | None = None) -> str:
    """`<yyyymmddHHMM>-<6 hex>`: short (it is on every replayed record item), sortable, unique enough."""
    return f"{(now or datetime.now(UTC)):%Y%m%d%H%M}-{secrets.token_hex(3)}"


@dataclass
class ReplayJournal:
    """What a replay run sent, so a killed run is continued with `--resume` under the same replay id.

    One append-only JSON Lines file per environment and selection (as typed), under
    `.rtp/replay-journals/`. Entries are flushed and fsynced before the action they announce:
    - `run`: the replay id, the resolved filter and the requests selected (written with the first
      `sending`, so a run that stops before sending anything leaves no journal);
    - `sending`: the batch ids of one SendMessageBatch call, before it;
    - `sent`: those SQS accepted: a resumed run never sends them again;
    - `done`: every request was sent.
    A batch `sending` but not `sent` (killed during the call) is sent again on resume: the processor
    replays a record at most once per replay id, so a second message changes nothing.
    """

    path: Path
    replay_id: str
    plan: Plan | None = None
    sending: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)
    done: bool = False
    resumed: bool = False
    header: dict[str, Any] | None = None

    def _append(self, *entries: dict[str, Any]) -> None:
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        lines = [*([self.header] if self.header is not None else []), *entries]
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps({**e, "at": at}, separators=(",", ":")) + "\n" for e in lines))
            handle.flush()
            os.fsync(handle.fileno())
        self.header = None

    def will_send(self, batch_ids: list[str]) -> None:
        self._append({"kind": "sending", "batches": batch_ids})
        self.sending.update(batch_ids)

    def record_sent(self, batch_ids: list[str]) -> None:
        self._append({"kind": "sent", "batches": batch_ids})
        self.sent.update(batch_ids)

    def finish(self) -> None:
        if self.header is None:  # nothing was written: no file to finish
            self._append({"kind": "done"})
        self.done = True

    @staticmethod
    def directory(state: Path) -> Path:
        return state / "replay-journals"

    @classmethod
    def unfinished(cls, directory: Path, env: str) -> list[Path]:
        """The journals of unfinished runs in `env` (any selection), newest first."""
        if not directory.is_dir():
            return []
        found = []
        for path in directory.glob("*.jsonl"):
            try:
                journal = cls._load(path)
            except ReplayError:
                continue
            if not journal.done and journal.plan is not None and journal.plan.env == env:
                found.append(path)
        return sorted(found, key=lambda path: path.stat().st_mtime, reverse=True)

    @classmethod
    def find(cls, directory: Path, key: str) -> ReplayJournal | None:
        path = directory / f"{key}.jsonl"
        return cls._load(path) if path.is_file() else None

    @classmethod
    def start(cls, directory: Path, key: str, plan: Plan, replay_id: str | None = None) -> ReplayJournal:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{key}.jsonl"
        path.unlink(missing_ok=True)
        journal = cls(path=path, replay_id=replay_id or new_replay_id(), plan=plan)
        journal.header = {
            "kind": "run",
            "replayId": journal.replay_id,
            "env": plan.env,
            "selection": asdict(plan.selection),
            "filter": plan.filter(),
            "since": plan.since,
            "until": plan.until,
            "matchingRecords": plan.listed_records,
            "skipped": plan.skipped,
            "notes": plan.notes,
            "warning": plan.warning,
            "requests": [candidate.row() for candidate in plan.candidates],
        }
        return journal

    @classmethod
    def _load(cls, path: Path) -> ReplayJournal:
        raw = path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            # A torn last line from a kill mid-write: the action it announced never started.
            raw = raw[: raw.rfind(b"\n") + 1]
            with path.open("r+b") as handle:
                handle.truncate(len(raw))
        journal: ReplayJournal | None = None
        for number, text in enumerate(raw.decode("utf-8").splitlines(), start=1):
            try:
                entry = json.loads(text)
                kind = entry.get("kind")
                if kind == "run":
                    journal = cls(path=path, replay_id=str(entry["replayId"]), plan=_plan_of(entry))
                elif journal is None:
                    raise JournalError(f"{path} does not start with a run entry; delete it or pass --restart")
                elif kind == "sending":
                    journal.sending.update(str(b) for b in entry["batches"])
                elif kind == "sent":
                    journal.sent.update(str(b) for b in entry["batches"])
                elif kind == "done":
                    journal.done = True
            except (ValueError, KeyError, TypeError, AttributeError):
                raise JournalError(
                    f"{path}:{number} is not a journal entry; delete it or pass --restart"
                ) from None
        if journal is None:
            raise JournalError(f"{path} is empty; delete it or pass --restart")
        return journal


def _plan_of(entry: dict[str, Any]) -> Plan:
    selection = entry["selection"]
    selection["batch_ids"] = tuple(selection.get("batch_ids", ()))
    flt = entry.get("filter", {})
    return Plan(
        env=str(entry["env"]),
        selection=Selection(**selection),
        status=flt.get("status"),
        reason=flt.get("reason"),
        processed_from=flt.get("processedFrom"),
        processed_to=flt.get("processedTo"),
        since=entry.get("since"),
        until=entry.get("until"),
        candidates=[Candidate.from_row(row) for row in entry["requests"]],
        skipped=dict(entry.get("skipped", {})),
        notes=list(entry.get("notes", [])),
        warning=entry.get("warning"),
        listed_records=entry.get("matchingRecords"),
    )


def open_journal(
    directory: Path, env: str, selection: Selection, resume: bool, restart: bool
) -> ReplayJournal | None:
    """The unfinished journal of this selection when resuming; None for a fresh run. Without --resume or
    --restart an unfinished run of the same selection stops the command (naming its journal)."""
    key = selection.key(env)
    earlier = ReplayJournal.find(directory, key) if not restart else None
    if earlier is not None and not earlier.done:
        if resume:
            earlier.resumed = True
            return earlier
        raise JournalError(
            f"an unfinished replay of this selection exists (replay id {earlier.replay_id}, "
            f"{len(earlier.sent)} of {len(earlier.plan.candidates) if earlier.plan else '?'} request(s) "
            f"sent; journal {earlier.path}): pass --resume to continue it under the same replay id (nothing "
            "is replayed twice), or --restart to start a new replay"
        )
    if resume:
        others = [path for path in ReplayJournal.unfinished(directory, env) if path.stem != key]
        hint = (
            f"; unfinished replay(s) of other selections: {', '.join(map(str, others[:3]))}" if others else ""
        )
        raise JournalError(f"--resume: no unfinished replay of this selection in {env}{hint}")
    return None


# --- sending -------------------------------------------------------------------------------------------
class Progress(Protocol):
    def selected(self, requests: int, records: int) -> None: ...

    def sent(self, requests: int, records: int) -> None: ...

    def pending(self, batches: int, chunks_left: int) -> None: ...


class NoProgress:
    def selected(self, requests: int, records: int) -> None:
        pass

    def sent(self, requests: int, records: int) -> None:
        pass

    def pending(self, batches: int, chunks_left: int) -> None:
        pass


@dataclass
class SendReport:
    replay_id: str
    journal: str
    resumed: bool
    requests: int = 0  # sent by this run
    records: int = 0
    bytes: int = 0
    already_sent: int = 0  # requests a resumed run found journaled as sent
    elapsed: float = 0.0
    waited_for_rate: float = 0.0

    @property
    def records_per_second(self) -> float:
        return self.records / self.elapsed if self.elapsed > 0 else 0.0


def claim_for(sources: Sources, plan: Plan, candidate: Candidate, replay_id: str) -> str:
    """The claim check of one request, with the replay's filter: the body sent to the replay queue."""
    from rtp_pipeline.storage import ClaimCheck, ReplayRequest

    try:
        request = ReplayRequest(
            replay_id,
            status=plan.status,
            reason=plan.reason,
            processed_from=plan.processed_from,
            processed_to=plan.processed_to,
        )
    except ValueError as error:  # the processor could never apply it: refused before anything is sent
        raise ReplayError(f"cannot build the replay message: {error}") from None
    claim = ClaimCheck(
        candidate.batch_id,
        sources.bucket,
        candidate.key,
        candidate.correlation_id,
        candidate.received_at,
        candidate.records,
        replay=request,
        by_record=candidate.by_record,
    )
    return claim.to_json()


def _groups(candidates: list[Candidate], rate: float) -> Iterator[list[Candidate]]:
    """Up to 10 messages per SendMessageBatch, and (with a rate) no more records per call than a second's
    worth, so the pace stays even instead of ten messages at once then a long wait."""
    group: list[Candidate] = []
    for candidate in candidates:
        full = len(group) == SEND_BATCH_ENTRIES
        over = rate > 0 and group and sum(c.records for c in group) + candidate.records > rate
        if full or over:
            yield group
            group = []
        group.append(candidate)
    if group:
        yield group


def send_replay(
    sources: Sources,
    journal: ReplayJournal,
    rate: float = DEFAULT_RATE,
    progress: Progress | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> SendReport:
    """Send the journal's plan to the replay queue, each request once (journaled before each call)."""
    plan = journal.plan
    assert plan is not None
    progress = progress or NoProgress()
    bucket = TokenBucket(rate, clock, sleep)
    report = SendReport(journal.replay_id, str(journal.path), journal.resumed)
    remaining = [c for c in plan.candidates if c.batch_id not in journal.sent]
    report.already_sent = len(plan.candidates) - len(remaining)
    progress.selected(plan.requests, plan.records)
    done = [c for c in plan.candidates if c.batch_id in journal.sent]
    progress.sent(len(done), sum(c.records for c in done))
    started = clock()
    for group in _groups(remaining, rate):
        bucket.take(sum(candidate.records for candidate in group))
        batch_ids = [candidate.batch_id for candidate in group]
        journal.will_send(batch_ids)
        _send_group(sources, plan, group, journal.replay_id, sleep)
        journal.record_sent(batch_ids)
        report.requests += len(group)
        report.records += sum(candidate.records for candidate in group)
        report.bytes += sum(candidate.bytes for candidate in group)
        progress.sent(len(group), sum(candidate.records for candidate in group))
    journal.finish()
    report.elapsed = clock() - started
    report.waited_for_rate = bucket.waited
    return report


def _send_group(sources: Sources, plan: Plan, group: list[Candidate], replay_id: str, sleep: Sleep) -> None:
    entries = {
        str(index): {"Id": str(index), "MessageBody": claim_for(sources, plan, candidate, replay_id)}
        for index, candidate in enumerate(group)
    }
    for attempt in range(SEND_ATTEMPTS):
        answer = sources.sqs.send_message_batch(QueueUrl=sources.queue_url, Entries=list(entries.values()))
        failed = answer.get("Failed") or []
        for entry in answer.get("Successful") or []:
            entries.pop(str(entry["Id"]), None)
        if not entries:
            return
        senders = [f for f in failed if f.get("SenderFault")]
        if senders:  # a message SQS will never take: not a retry's business
            raise ReplayError(f"the replay queue refused a message: {senders[0].get('Message')}", 1)
        sleep(min(2.0, 0.1 * 2**attempt))
    raise ReplayError(
        f"the replay queue kept refusing {len(entries)} message(s) after {SEND_ATTEMPTS} tries", 1
    )


# --- waiting -------------------------------------------------------------------------------------------
@dataclass
class WaitReport:
    complete: bool
    pending_batches: list[str]
    elapsed: float
    before: dict[str, int]
    after: dict[str, int]

    @property
    def delta(self) -> dict[str, int]:
        return {name: self.after[name] - self.before[name] for name in _COUNTERS}


def chunks_left(item: dict[str, Any], replay_id: str) -> int:
    """Chunks of the batch this replay has not settled yet (the processor adds `<replayId>:<n>` to `rc`)."""
    settled = {str(entry) for entry in item.get("rc", [])}
    total = math.ceil(int(item.get("accepted", 0)) / CHUNK_RECORDS)
    return sum(1 for chunk in range(total) if f"{replay_id}:{chunk}" not in settled)


def counter_totals(items: Iterable[dict[str, Any]]) -> dict[str, int]:
    totals = dict.fromkeys(_COUNTERS, 0)
    for item in items:
        for name in _COUNTERS:
            totals[name] += int(item.get(name, 0))
    return totals


def wait_for_replay(
    sources: Sources,
    plan: Plan,
    replay_id: str,
    timeout: float = DEFAULT_WAIT_SECONDS,
    progress: Progress | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    poll: float = WAIT_POLL_SECONDS,
) -> WaitReport:
    """Poll the selected batches' items until each has every chunk settled by `replay_id`, or `timeout`."""
    progress = progress or NoProgress()
    before = counter_totals(candidate.counts for candidate in plan.candidates)  # at selection
    started = clock()
    pending = [candidate.batch_id for candidate in plan.candidates]
    items: dict[str, dict[str, Any]] = {}
    while True:
        fresh = _batch_items(sources.table, pending, sleep)
        items.update(fresh)
        left = {
            batch_id: chunks_left(items[batch_id], replay_id) if batch_id in items else 1
            for batch_id in pending
        }
        pending = [batch_id for batch_id, count in left.items() if count]
        progress.pending(len(pending), sum(left.values()))
        if not pending or clock() - started >= timeout:
            break
        sleep(poll)
    after = counter_totals(items.values())
    return WaitReport(
        complete=not pending,
        pending_batches=pending,
        elapsed=clock() - started,
        before=before,
        after=after,
    )


def _processed_window(window: tuple[datetime, datetime]) -> tuple[str, str]:
    """The listing's window (both ends included, milliseconds) as the processor's filter, whose end is
    excluded (rtp_pipeline.storage.ReplayRequest.processed_to): one millisecond past `until`."""
    return _iso(window[0]), _iso(window[1] + timedelta(milliseconds=1))


# --- helpers -------------------------------------------------------------------------------------------
def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- rendering -----------------------------------------------------------------------------------------
def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{count} B"


def plan_lines(plan: Plan, dry_run: bool) -> list[str]:
    """The selection for people: rich markup lines (values escaped)."""
    from rich.markup import escape

    lines = []
    head = "would replay" if dry_run else "replaying"
    window = f", window {plan.since} to {plan.until}" if plan.since else ""
    lines.append(
        f"[bold]{head}[/bold] {plan.requests:,} request(s), {plan.records:,} record(s), "
        f"{_size(plan.bytes)} of raw requests in {escape(plan.env)}{escape(window)}"
    )
    flt = {name: value for name, value in plan.filter().items() if value is not None}
    if flt:
        matching = (
            f"; {plan.listed_records:,} REJECTED record(s) match" if plan.listed_records is not None else ""
        )
        lines.append(f"  only records with {escape(json.dumps(flt, ensure_ascii=False))}{matching}")
    for why, count in sorted(plan.skipped.items()):
        lines.append(f"  skipped {count:,} ({escape(why)})")
    lines += [f"  [dim]note: {escape(note)}[/dim]" for note in plan.notes]
    if plan.warning:
        lines.append(f"[bold yellow]warning:[/bold yellow] {escape(plan.warning)}")
    return lines


class _RichProgress:
    """The command's progress bar: records sent, then chunks still to settle with --wait."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.task = progress.add_task("sending", total=None, note="")
        self.wait_task: Any = None
        self.done = 0
        self.chunks: int | None = None

    def selected(self, requests: int, records: int) -> None:
        self.progress.update(self.task, total=records or None)

    def sent(self, requests: int, records: int) -> None:
        self.done += records
        self.progress.update(self.task, completed=self.done)

    def pending(self, batches: int, chunks_left: int) -> None:
        if self.wait_task is None:
            self.chunks = chunks_left
            self.wait_task = self.progress.add_task("replaying", total=chunks_left or None, note="")
        total = self.chunks or 0
        self.progress.update(
            self.wait_task, completed=max(total - chunks_left, 0), note=f"{batches:,} batch(es) pending"
        )


def _error_code(error: Exception) -> int:
    """2 for credentials and permissions (nothing to retry as is), 1 otherwise."""
    if isinstance(error, NoCredentialsError):
        return 2
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in {
            "AccessDenied",
            "AccessDeniedException",
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "ExpiredToken",
            "ExpiredTokenException",
            "SignatureDoesNotMatch",
        }:
            return 2
    return 1


def replay(
    env: EnvOption = "local",
    since: Annotated[
        str | None,
        typer.Option("--since", help="Window start: RFC 3339 or a duration before now (30m, 1h, 2d)."),
    ] = None,
    until: UntilOption = None,
    batch: Annotated[
        list[str] | None, typer.Option("--batch", metavar="BATCH_ID", help="Replay this batch (repeatable).")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only records stored with this status: REJECTED (with --since: the REJECTED index gives "
            "the batches) or PROCESSED.",
        ),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="With --status REJECTED: only reasons containing this text."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Show what would be replayed (requests, records, bytes); send nothing."
        ),
    ] = False,
    rate: Annotated[
        float,
        typer.Option(
            "--rate",
            min=0,
            help=f"Records per second sent for replay (0: no limit). Default {DEFAULT_RATE:,.0f}.",
        ),
    ] = DEFAULT_RATE,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until every selected batch is replayed; show counter deltas.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds --wait waits at most.")
    ] = DEFAULT_WAIT_SECONDS,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the unfinished replay of this selection (same replay id)."),
    ] = False,
    restart: Annotated[
        bool,
        typer.Option("--restart", help="Forget an unfinished replay of this selection; start a new one."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object (for machines).")] = False,
    profile: ProfileOption = None,
) -> None:
    """Run kept raw requests through the current transform again (by window, batch or outcome)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rtp_cli.console import console, err
    from rtp_cli.target import ConfigError, TargetError, resolve_target, state_dir

    if resume and restart:
        fail("--resume and --restart: give one of them")
    selection = Selection(since, until, tuple(batch or ()), status.upper() if status else None, reason)
    directory = ReplayJournal.directory(state_dir())
    journal: ReplayJournal | None = None
    try:
        check_selection(selection)
        if since is not None:  # a bad window is refused before any environment is looked up
            resolve_window(since, until, datetime.now(UTC))
        TokenBucket(rate)
        target = resolve_target(env, profile)
        sources = sources_for(target)
        if not dry_run:
            journal = open_journal(directory, env, selection, resume, restart)
        plan = (
            journal.plan
            if journal is not None and journal.plan is not None
            else plan_replay(sources, selection)
        )
    except (ConfigError, TargetError) as error:
        fail(str(error))
    except ReplayError as error:
        fail(error.message, error.exit_code)
    except (ClientError, BotoCoreError) as error:
        fail(f"cannot read the {env} environment: {error}", _error_code(error))
    except OSError as error:  # the API's connection errors (requests) are OSErrors
        fail(f"cannot reach the {env} environment: {error}")
    others = [
        path
        for path in ReplayJournal.unfinished(directory, env)
        if path != (journal.path if journal else None)
    ]
    if dry_run or plan.requests == 0:
        if as_json:
            print(json.dumps({"plan": plan.summary(), "dryRun": dry_run}, ensure_ascii=False))
        else:
            for line in plan_lines(plan, True):
                console.print(line, highlight=False, soft_wrap=True)
            if not plan.requests:
                console.print("nothing to replay", highlight=False)
        return
    if journal is None:
        journal = ReplayJournal.start(directory, selection.key(env), plan)
    if not as_json:
        for line in plan_lines(plan, False):
            console.print(line, highlight=False, soft_wrap=True)
        resumed = f" (resumed: {len(journal.sent):,} request(s) sent before)" if journal.resumed else ""
        console.print(f"replay id {journal.replay_id}{resumed}; journal {journal.path}", highlight=False)
        for path in others[:3]:
            console.print(f"[yellow]note:[/yellow] an unfinished replay of another selection: {path}")
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    )
    waited: WaitReport | None = None
    try:
        with Progress(*columns, console=err, transient=False, disable=not err.is_terminal) as bar:
            progress = _RichProgress(bar)
            sent = send_replay(sources, journal, rate, progress)
            if wait:
                waited = wait_for_replay(sources, plan, journal.replay_id, timeout, progress)
    except ReplayError as error:
        fail(f"{error.message}; journal {journal.path}: rerun with --resume", error.exit_code)
    except (ClientError, BotoCoreError) as error:
        fail(f"replay stopped: {error}; journal {journal.path}: rerun with --resume", _error_code(error))
    report: dict[str, Any] = {
        "replayId": journal.replay_id,
        "journal": str(journal.path),
        "resumed": journal.resumed,
        "plan": plan.summary(),
        "sent": {
            "requests": sent.requests,
            "records": sent.records,
            "bytes": sent.bytes,
            "alreadySent": sent.already_sent,
            "elapsedSeconds": round(sent.elapsed, 3),
            "recordsPerSecond": round(sent.records_per_second, 1),
        },
    }
    if waited is not None:
        report["wait"] = {
            "complete": waited.complete,
            "pendingBatches": waited.pending_batches[:100],
            "elapsedSeconds": round(waited.elapsed, 3),
            "before": waited.before,
            "after": waited.after,
            "delta": waited.delta,
        }
    if as_json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        console.print(
            f"sent {sent.requests:,} request(s), {sent.records:,} record(s), {_size(sent.bytes)} in "
            f"{sent.elapsed:,.1f} s ({sent.records_per_second:,.0f} records/s)"
            + (f"; {sent.already_sent:,} sent by the earlier run" if sent.already_sent else ""),
            highlight=False,
        )
        if waited is not None:
            delta = ", ".join(
                f"{name} {waited.before[name]:,} -> {waited.after[name]:,} ({value:+,})"
                for name, value in waited.delta.items()
            )
            state = (
                "replayed"
                if waited.complete
                else f"[red]{len(waited.pending_batches):,} batch(es) pending[/red]"
            )
            console.print(f"{state} after {waited.elapsed:,.1f} s; counters: {delta}", highlight=False)
        elif not as_json:
            console.print(
                "the processor replays them from the replay queue; follow with `rtp replay ... --wait` "
                "or `rtp trace --batch ID`",
                highlight=False,
            )
    if waited is not None and not waited.complete:
        raise typer.Exit(1)
