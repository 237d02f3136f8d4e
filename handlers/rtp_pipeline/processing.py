"""Processing one claim check: read the raw request, validate and transform each record, store outcomes.

A record's content never fails its neighbours. Every record ends in one of three ways:

- PROCESSED: the transform's result, stored.
- REJECTED, stored with its reason and never retried: the record breaks the schema or what the store can
  hold (ingest refuses those, the processor checks again what it reads back); the transform raised
  `RejectRecord`; or the result cannot be stored (checked before writing; an item DynamoDB refuses all the
  same is turned into REJECTED by `PipelineTable.store_chunk`, and its neighbours written).
- Not done yet: the transform raised anything else (the contract's transient fault), or S3/DynamoDB failed
  after the SDK's own retries. The transform is retried inside the invocation (`RetryPolicy`: bounded
  attempts, exponential backoff with full jitter, never past the function's remaining time less a
  reserve). The records that succeeded are stored all the same; the message then fails, SQS redelivers it
  after its visibility timeout, and the redelivery reads which records are already stored and transforms
  only the others. After maxReceiveCount deliveries the message lands in the dead-letter queue.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rtp_pipeline.contract import RejectRecord, TransformContext
from rtp_pipeline.ingest import record_ids
from rtp_pipeline.settings import Settings
from rtp_pipeline.storage import (
    CHUNK_RECORDS,
    KEY_LIMITS,
    LEASED_WRITE_MIN,
    MAX_RUN_CHUNKS,
    PROCESSED,
    REJECTED,
    ChunkWrite,
    ClaimCheck,
    Outcome,
    PipelineTable,
    RawStore,
    ReplayMark,
    ReplayRequest,
    ReplayView,
    Stored,
    counted_by_record,
    epoch_seconds,
    owned_by,
    replay_tag,
    ttl,
)
from rtp_pipeline.validation import (
    extract_records,
    item_problems,
    parse_json_document,
    parse_rfc3339,
    validate_record,
)

# A Lambda function runs at most 15 minutes:
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html
LAMBDA_MAX_TIMEOUT_MS = 900_000

Transform = Callable[[dict[str, Any], TransformContext], dict[str, Any]]


@dataclass(frozen=True)
class RetryPolicy:
    """How a transform's transient fault is retried within one invocation.

    Backoff with "full jitter" (a uniform delay between 0 and min(max_delay, base_delay * 2**retry)), as
    the AWS Architecture Blog recommends for contended retries:
    https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
    No retry starts, and no record is transformed, once less than the reserve of the invocation remains:
    `reserve_ms`, or a quarter of the time left when the message's processing began if that is less (a
    function with a 2 s timeout keeps 0.5 s). What is done is then stored and the message given back to
    SQS before Lambda's timeout can cut it off."""

    attempts: int = 4  # transform calls per record and delivery
    base_delay: float = 0.05  # seconds
    max_delay: float = 1.0
    reserve_ms: int = 5_000

    def delay(self, retry: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2**retry))


@dataclass(frozen=True)
class Deadline:
    """When to stop starting work in this invocation (`remaining_ms` None: never)."""

    remaining_ms: Callable[[], int] | None
    reserve_ms: float = 0.0

    @classmethod
    def starting(cls, remaining_ms: Callable[[], int] | None, policy: RetryPolicy) -> Deadline:
        if remaining_ms is None:
            return cls(None)
        return cls(remaining_ms, min(policy.reserve_ms, remaining_ms() / 4))

    def lease_window(self) -> tuple[datetime, datetime]:
        """(now, until) by the wall clock for a chunk lease: until this invocation must have ended (Lambda
        stops it at its timeout, at most 15 minutes), plus a second of clock skew."""
        now = datetime.now(UTC)
        left_ms = self.remaining_ms() if self.remaining_ms is not None else LAMBDA_MAX_TIMEOUT_MS
        return now, now + timedelta(milliseconds=left_ms + 1_000)

    def passed(self, after_s: float = 0.0) -> bool:
        return self.remaining_ms is not None and self.remaining_ms() - after_s * 1000 < self.reserve_ms


class OutOfTimeError(Exception):
    """A record this delivery did not start: too little of the invocation was left. Not a TimeoutError on
    purpose: a transform's own timeout (socket.timeout, asyncio's) is a TimeoutError, and a fault, which
    must keep the queue's visibility-timeout backoff."""


class RecordsNotDoneError(RuntimeError):
    """Some records of the message are not stored yet (transient faults that outlasted their retries, or no
    time left); the others are. Raised so that SQS redelivers the message. `out_of_time`: only time was
    missing (no fault): the message can be handed back at once instead of after its visibility timeout."""

    def __init__(self, message: str, out_of_time: bool = False) -> None:
        super().__init__(message)
        self.out_of_time = out_of_time


@dataclass(frozen=True)
class BatchResult:
    batch_id: str
    newly_processed: int  # stored by this delivery (0 when an earlier delivery already stored them)
    newly_rejected: int
    skipped: int  # already stored by an earlier delivery (or not selected by a replay): not transformed
    duplicates: int  # ids another batch had stored first (counted once, on the batch)
    latency_ms: float
    replayed_processed: int = 0  # a replay's: outcomes replaced by this delivery, by their new status
    replayed_rejected: int = 0
    note: str = ""  # why a replay skipped the batch


@dataclass(frozen=True)
class _Job:
    """One message's records and what every record's processing shares."""

    claim: ClaimCheck
    records: list[Any]
    ids: list[str]
    is_batch: bool
    received_at: datetime
    started: datetime
    expires: datetime
    deadline: Deadline

    @property
    def by_record(self) -> bool:
        """The batch keeps no counters: its one record's item is its count (`counted_by_record`). From the
        claim check, so that a batch created before the flag existed keeps counting."""
        return self.claim.by_record and counted_by_record(self.claim.batch_id, self.ids)


@dataclass
class _Tally:
    """What one delivery did, chunk by chunk."""

    stored: list[Outcome] = field(default_factory=list)
    replaced: list[Outcome] = field(default_factory=list)
    not_done: list[tuple[str, BaseException]] = field(default_factory=list)
    skipped: int = 0
    duplicates: int = 0

    def out_of_time(self, record_ids: Iterable[str]) -> None:
        self.not_done.extend(
            (record_id, OutOfTimeError("too little time left in this invocation")) for record_id in record_ids
        )


def replay_selects(replay: ReplayRequest, view: ReplayView) -> bool:
    """Whether a replay's filters select a stored record (this batch's, not replayed by it yet)."""
    if replay.status is not None and view.status != replay.status:
        return False
    if replay.reason is not None and (view.status != REJECTED or replay.reason not in (view.reason or "")):
        return False
    if replay.processed_from is None and replay.processed_to is None:
        return True
    if not view.processed_at:
        return False
    processed = parse_rfc3339(view.processed_at)
    if replay.processed_from is not None and processed < parse_rfc3339(replay.processed_from):
        return False
    return replay.processed_to is None or processed < parse_rfc3339(replay.processed_to)


class Processor:
    def __init__(
        self,
        settings: Settings,
        raw: RawStore,
        table: PipelineTable,
        transform: Transform,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings, self.raw, self.table, self.transform = settings, raw, table, transform
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.rng = rng or random.Random()  # jitter, not security

    def process(
        self,
        claim: ClaimCheck,
        now: datetime | None = None,
        receive_count: int = 1,
        remaining_ms: Callable[[], int] | None = None,
    ) -> BatchResult:
        """Process one claim check (a replay's, when `claim.replay` is set: `_replay_chunk`).
        `receive_count` is the SQS message's ApproximateReceiveCount; `remaining_ms` the invocation's
        remaining time (Lambda context), None for no limit.
        Raises RecordsNotDoneError (or the fault itself) when the message must be redelivered."""
        started = now or datetime.now(UTC)
        deadline = Deadline.starting(remaining_ms, self.retry)
        # The parser ingest accepted the body with: plain floats, as the transform contract promises.
        payload = parse_json_document(self.raw.get(claim.bucket, claim.key), reject_lone_surrogates=False)
        records, is_batch, envelope = extract_records(payload, max_records=max(claim.record_count, 1))
        if envelope or len(records) != claim.record_count:
            # Ingest validated this body before enqueueing it; a mismatch means the object was replaced.
            raise ValueError(
                f"raw object {claim.key} does not hold the {claim.record_count} records accepted"
            )
        job = _Job(
            claim,
            records,
            record_ids(claim.batch_id, records),
            is_batch,
            parse_rfc3339(claim.received_at),
            started,
            ttl(started, days=self.settings.record_ttl_days),
            deadline,
        )
        replay = claim.replay
        tally = _Tally()
        # A first delivery has stored nothing yet. A redelivery skips the chunks already counted (one
        # consistent GetItem), and reads which records of the others an earlier delivery stored (one
        # BatchGetItem per chunk): it does not transform them again, and counts from what the table holds.
        # A claim check ingest sent again (`resent`) is read like a redelivery: an earlier message of the
        # same batch may have stored records. A replay reads the same, and which chunks it settled (`rc`).
        counted: set[int] = set()
        replayed: set[str] = set()
        redelivered = receive_count > 1 or claim.resent
        if replay is None:
            if redelivered:
                counted = self.table.counted_chunks(claim.batch_id)
        else:
            progress = self.table.batch_progress(claim.batch_id, started)
            if progress is None:  # nothing to count a replay on: a terminal skip, not a failure to retry
                return BatchResult(
                    claim.batch_id, 0, 0, len(records), 0, 0.0, note="batch item gone (TTL): not replayed"
                )
            counted, replayed = progress
        run: list[tuple[int, range]] = []  # a first delivery's chunks leased together (`_process_run`)
        for chunk, start in enumerate(range(0, len(records), CHUNK_RECORDS)):
            indexes = range(start, min(start + CHUNK_RECORDS, len(records)))
            if replay is None and not redelivered and self._leases(job, indexes):
                run.append((chunk, indexes))
                if len(run) == MAX_RUN_CHUNKS:
                    self._process_run(job, run, tally)
                    run = []
                continue
            if run:
                self._process_run(job, run, tally)
                run = []
            if replay is not None and replay_tag(replay.replay_id, chunk) in replayed:
                tally.skipped += len(indexes)
            elif chunk not in counted:
                # A replay first finishes a chunk never counted (its records then get the current transform).
                settled = self._process_chunk(job, chunk, indexes, redelivered or replay is not None, tally)
                if replay is not None and settled:
                    self._replay_chunk(job, chunk, indexes, replay, tally)
            elif replay is None:
                tally.skipped += len(indexes)
            else:
                self._replay_chunk(job, chunk, indexes, replay, tally)
        if run:
            self._process_run(job, run, tally)

        if tally.not_done:
            record_id, first = tally.not_done[0]
            raise RecordsNotDoneError(
                f"{len(tally.not_done)} of {len(records)} record(s) not done, e.g. {record_id}: "
                f"{type(first).__name__}: {first}",
                out_of_time=all(isinstance(error, OutOfTimeError) for _, error in tally.not_done),
            ) from first
        newly_processed = sum(1 for outcome in tally.stored if outcome.status == PROCESSED)
        replayed_processed = sum(1 for outcome in tally.replaced if outcome.status == PROCESSED)
        return BatchResult(
            batch_id=claim.batch_id,
            newly_processed=newly_processed,
            newly_rejected=len(tally.stored) - newly_processed,
            skipped=tally.skipped,
            duplicates=tally.duplicates,
            latency_ms=(started - job.received_at).total_seconds() * 1000,
            replayed_processed=replayed_processed,
            replayed_rejected=len(tally.replaced) - replayed_processed,
        )

    def _process_chunk(self, job: _Job, chunk: int, indexes: range, redelivered: bool, tally: _Tally) -> bool:
        """Store and count one chunk not counted yet; True if it is counted now (by this delivery or,
        as found, by another)."""
        batch_id, ids = job.claim.batch_id, job.ids
        if job.deadline.passed():  # not even the lease: three calls for nothing
            tally.out_of_time(ids[index] for index in indexes)
            return False
        lease: int | None = None
        if self._leases(job, indexes):
            held = self.table.lease_chunk(batch_id, chunk, *job.deadline.lease_window())
            if held == "counted":
                tally.skipped += len(indexes)
                return True
            if held == "busy":
                busy = RuntimeError(f"another delivery of this message holds chunk {chunk}")
                tally.not_done.extend((ids[index], busy) for index in indexes)
                return False
            lease = int(held)
        counted_now = False
        try:
            complete, written = self._store_chunk(job, chunk, indexes, redelivered, tally, lease, count=True)
            counted_now = complete
        finally:
            if lease is not None and not counted_now:
                # Given back now, so that the redelivery need not wait for the lease to run out.
                self.table.release_chunk(batch_id, chunk, lease)
        self._tally_written(job, written, tally)
        return counted_now

    def _process_run(self, job: _Job, run: list[tuple[int, range]], tally: _Tally) -> None:
        """A first delivery's consecutive chunks that each take a lease (`_leases`): leased together and
        counted together, two UpdateItems for the run instead of two per chunk. A chunk that is not settled
        (a record failed, or no time was left) stays uncounted and its lease is given back with the count.
        If any chunk of the run is counted or held already (another delivery of the message is at work),
        the chunks go one at a time (`_process_chunk`), which tells counted from busy."""
        batch_id = job.claim.batch_id
        if len(run) == 1 or job.by_record or job.deadline.passed():
            for chunk, indexes in run:
                self._process_chunk(job, chunk, indexes, False, tally)
            return
        chunks = [chunk for chunk, _ in run]
        lease = self.table.lease_chunks(batch_id, chunks, *job.deadline.lease_window())
        if lease is None:
            # Another delivery of this message is, or was, at work: read what it stored, as a redelivery.
            for chunk, indexes in run:
                self._process_chunk(job, chunk, indexes, True, tally)
            return
        counted = False
        writes: list[ChunkWrite] = []
        try:
            settled: dict[int, Iterable[Stored]] = {}
            for chunk, indexes in run:
                if job.deadline.passed():
                    tally.out_of_time(job.ids[index] for index in indexes)
                    continue
                complete, written = self._store_chunk(job, chunk, indexes, False, tally, lease, count=False)
                writes.append(written)
                if complete:
                    settled[chunk] = written.settled.values()
            if settled:
                self.table.count_chunks(batch_id, settled, lease, chunks)
                counted = True
        finally:
            if not counted:
                self.table.release_chunks(batch_id, chunks, lease)
        for written in writes:
            self._tally_written(job, written, tally)

    @staticmethod
    def _leases(job: _Job, indexes: range) -> bool:
        """Whether a chunk writes under a lease: enough of its records are ids only this batch can write."""
        batch_id, ids = job.claim.batch_id, job.ids
        return sum(owned_by(ids[index], batch_id) for index in indexes) >= LEASED_WRITE_MIN

    def _store_chunk(
        self,
        job: _Job,
        chunk: int,
        indexes: range,
        redelivered: bool,
        tally: _Tally,
        lease: int | None,
        count: bool,
    ) -> tuple[bool, ChunkWrite]:
        """Transform and store a chunk's records not stored yet (a redelivery reads which are); counts the
        chunk when `count` and every record is settled. (complete, what was written and found.)"""
        batch_id, ids = job.claim.batch_id, job.ids
        known = self.table.stored_records([ids[index] for index in indexes]) if redelivered else {}
        settled: dict[str, Stored] = {}
        outcomes: list[Outcome] = []
        complete = True
        for index in indexes:
            record_id = ids[index]
            existing = known.get(record_id)
            if existing is not None:
                settled[record_id] = existing
                if existing.batch_id == batch_id:
                    tally.skipped += 1
                continue
            outcome = self._attempt(job, index, tally)
            if outcome is None:
                complete = False
            else:
                outcomes.append(outcome)
        # What succeeded is stored even if a neighbour failed: the redelivery will skip it. The chunk is
        # counted once all its records are settled, by this delivery or a later one.
        written = self.table.store_chunk(
            batch_id,
            chunk,
            outcomes,
            settled,
            complete,
            job.expires,
            job.started,
            lease,
            count and not job.by_record,
        )
        return complete, written

    @staticmethod
    def _tally_written(job: _Job, written: ChunkWrite, tally: _Tally) -> None:
        tally.stored.extend(written.stored)
        tally.duplicates += sum(1 for held in written.settled.values() if held.batch_id != job.claim.batch_id)

    def _replay_chunk(
        self, job: _Job, chunk: int, indexes: range, replay: ReplayRequest, tally: _Tally
    ) -> None:
        """Run the records of one counted chunk that the replay selects through the current transform again
        and replace their items, then move the batch counters by the change, once per replay and chunk.

        Under the chunk's replay lease (one writer at a time, whatever the replay). Each replaced item
        carries the replay's mark (its id and the status the counters hold for it), so a redelivery of the
        replay message skips what is replaced already, and the count comes from the items themselves, crash
        or not. Marks of another replay that were never counted (it crashed before counting, and this one
        got the lease first) are counted here, with that replay's tag, so no change is lost or counted
        twice; a record replaced over such a mark keeps its counted status as `ps`."""
        batch_id, ids = job.claim.batch_id, job.ids
        if job.deadline.passed():
            tally.out_of_time(ids[index] for index in indexes)
            return
        held, tags = self.table.lease_replay_chunk(
            batch_id, chunk, replay.replay_id, *job.deadline.lease_window()
        )
        if held == "counted":
            tally.skipped += len(indexes)
            return
        if held == "busy":
            busy = RuntimeError(f"another delivery holds chunk {chunk}'s replay lease")
            tally.not_done.extend((ids[index], busy) for index in indexes)
            return
        lease = int(held)
        counted_now = False
        try:
            views = self.table.replay_candidates([ids[index] for index in indexes])
            uncounted: list[ReplayView] = []  # marks to count now: this replay's, and others' left over
            others: set[str] = set()  # the tags of those other replays
            todo: list[tuple[Outcome, ReplayMark]] = []
            complete = True
            now = epoch_seconds(job.started)
            for index in indexes:
                view = views.get(ids[index])
                if view is None or view.batch_id != batch_id:
                    tally.skipped += 1  # not stored, or another batch's id: never replayed here
                    continue
                if view.replay_id == replay.replay_id:
                    uncounted.append(view)  # replaced by an earlier delivery of this replay
                    continue
                left_over = view.replay_id is not None and replay_tag(view.replay_id, chunk) not in tags
                if left_over:
                    others.add(replay_tag(str(view.replay_id), chunk))
                counted_status = str(view.previous) if left_over else view.status
                if view.expires_at <= now or not replay_selects(replay, view):
                    tally.skipped += 1  # expired (TTL deletes lag), or not what the replay asks for
                    if left_over:
                        uncounted.append(view)
                    continue
                outcome = self._attempt(job, index, tally)
                if outcome is None:
                    complete = False
                    continue
                todo.append((outcome, ReplayMark(replay.replay_id, counted_status, view.expires_at)))
            replaced = self.table.replace_records(batch_id, todo, job.started)
            tally.replaced.extend(replaced)
            if complete:
                uncounted.extend(
                    ReplayView(batch_id, outcome.status, "", None, replay.replay_id, mark.previous)
                    for outcome, (_, mark) in zip(replaced, todo, strict=True)
                )
                self.table.count_replay_chunk(
                    batch_id, chunk, replay.replay_id, uncounted, lease, others, count=not job.by_record
                )
                counted_now = True
        finally:
            if not counted_now:
                self.table.release_chunk(batch_id, chunk, lease, replay=True)

    def _attempt(self, job: _Job, index: int, tally: _Tally) -> Outcome | None:
        """One record's outcome, or None (noted in `tally.not_done`) if it is not done in this delivery."""
        record_id = job.ids[index]
        if job.deadline.passed():
            tally.out_of_time([record_id])
            return None
        claim = job.claim
        context = TransformContext(
            record_id, claim.batch_id, claim.correlation_id, job.received_at, job.started
        )
        try:
            return self._outcome_with_retries(
                job.records[index], index, job.is_batch, context, job.expires, job.deadline
            )
        except Exception as error:  # the contract's transient fault, retried in vain
            tally.not_done.append((record_id, error))
            return None

    def _outcome_with_retries(
        self,
        record: Any,
        index: int,
        is_batch: bool,
        context: TransformContext,
        expires: datetime,
        deadline: Deadline,
    ) -> Outcome:
        retry = 0
        while True:
            try:
                return self._outcome(record, index, is_batch, context, expires)
            except Exception:
                delay = self.retry.delay(retry, self.rng)
                retry += 1
                if retry >= self.retry.attempts or deadline.passed(after_s=delay):
                    raise
                self.sleep(delay)

    def _outcome(
        self, record: Any, index: int, is_batch: bool, context: TransformContext, expires: datetime
    ) -> Outcome:
        record_id = context.record_id
        record_type = str(record.get("type", "unknown")) if isinstance(record, dict) else "unknown"
        violations = validate_record(record, index, f"records[{index}]." if is_batch else "")
        if violations:
            reason = "; ".join(f"{v.field} {v.message}" for v in violations)
            return Outcome(record_id, REJECTED, record_type, reason=f"schema: {reason}")
        try:
            result = self.transform(record, context)
        except RejectRecord as rejection:
            return Outcome(record_id, REJECTED, record_type, reason=rejection.reason)
        if not isinstance(result, dict):  # a bug in the transform, not in the record: retried, then DLQ
            raise TypeError(f"the transform returned a {type(result).__name__}; it must return a dict")
        outcome = Outcome(record_id, PROCESSED, str(result.get("type", record_type)), result=result)
        # What DynamoDB can hold (valid Unicode, numbers in range, depth, names, 400 KB with the record's
        # bookkeeping), checked before writing so that one record cannot fail its put.
        item = PipelineTable.record_item(context.batch_id, outcome, expires, context.processed_at)
        problems = item_problems(item, KEY_LIMITS)
        if problems:
            return Outcome(
                record_id, REJECTED, record_type, reason="result cannot be stored: " + "; ".join(problems)
            )
        # A value the checks pass but boto3 cannot serialize (a set of mixed types, say) is turned into a
        # REJECTED stand-in by the store (`PipelineTable._storable`): not serialized twice here.
        return outcome
