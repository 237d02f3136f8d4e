"""`rtp send`: a smoke test with generated records, and bulk loads of JSON Lines or CSV.

Bulk loads never lose a record quietly: every input line is accepted, reported invalid (with its line
number), rejected by the API (line number and reason) or failed after retries (line numbers). Retries of
429, 5xx, 409 (another request with the same key at the same moment) and connection errors back off
exponentially with full jitter and reuse the batch's Idempotency-Key, so a retry whose first attempt did
reach the API is replayed, never stored twice.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import requests

from rtp_cli.operate.api_client import ApiClient, ApiResponse, encode
from rtp_cli.operate.inputs import Batch, InputOptions, InvalidLine, batches, file_digest, read_items
from rtp_cli.operate.journal import Journal, journal_key

# 409: another request with the same Idempotency-Key arrived in the same millisecond (IDEMPOTENCY_KEY_IN_USE).
RETRYABLE_STATUS = frozenset({409, 429, 500, 502, 503, 504})


class FatalSendError(RuntimeError):
    """Nothing else can succeed either (e.g. 403: credentials refused): the run stops."""


class Progress(Protocol):
    def start(self, total_records: int) -> None: ...
    def advance(self, records: int) -> None: ...
    def error(self, count: int = 1) -> None: ...
    def retry(self) -> None: ...


class NoProgress:
    def start(self, total_records: int) -> None:
        pass

    def advance(self, records: int) -> None:
        pass

    def error(self, count: int = 1) -> None:
        pass

    def retry(self) -> None:
        pass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 0.2
    cap_seconds: float = 20.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^attempt)], and never before Retry-After."""
        jitter = random.uniform(0, min(self.cap_seconds, self.base_seconds * (2**attempt)))
        return max(jitter, retry_after or 0.0)


@dataclass
class BatchOutcome:
    batch: Batch
    status: str  # accepted | rejected | failed
    batch_id: str = ""
    ids: list[str] = field(default_factory=list)
    message: str = ""
    details: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    replayed: bool = False


@dataclass
class SendSummary:
    accepted_records: int = 0
    accepted_batches: int = 0
    resumed_records: int = 0  # accepted by the earlier run that --resume continued
    rejected: list[InvalidLine] = field(default_factory=list)  # invalid input or refused by the API
    failed: list[tuple[list[int], str]] = field(default_factory=list)  # (input lines, last error)
    retries: int = 0
    replayed_batches: int = 0
    batch_ids: list[str] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    journal: Path | None = None
    resumed: bool = False

    @property
    def failed_records(self) -> int:
        return sum(len(lines) for lines, _ in self.failed)

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.failed

    @property
    def rate(self) -> float:
        sent = self.accepted_records - self.resumed_records
        return sent / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


class BatchSender:
    def __init__(
        self,
        client: ApiClient,
        policy: RetryPolicy | None = None,
        progress: Progress | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.policy = policy or RetryPolicy()
        self.progress = progress or NoProgress()
        self.sleep = sleep

    def send(self, batch: Batch, idempotency_key: str) -> BatchOutcome:
        body = batch.body()
        last = ""
        for attempt in range(self.policy.max_attempts):
            if attempt:
                self.progress.retry()
            retry_after: float | None = None
            try:
                response = self.client.post_records(body, idempotency_key)
            except requests.RequestException as error:
                last = f"{type(error).__name__}: {error}"
            else:
                if response.ok:
                    return self._accepted(batch, response, attempt + 1)
                if response.status == 403:
                    raise FatalSendError(f"the API refused the credentials (403): {response.error_message()}")
                if response.status not in RETRYABLE_STATUS:
                    return self._refused(batch, response, attempt + 1)
                last = f"HTTP {response.status}: {response.error_message()}"
                retry_after = _retry_after(response)
            if attempt + 1 < self.policy.max_attempts:
                self.sleep(self.policy.delay(attempt, retry_after))
        return BatchOutcome(
            batch,
            "failed",
            message=f"gave up after {self.policy.max_attempts} attempts; last: {last}",
            attempts=self.policy.max_attempts,
        )

    @staticmethod
    def _accepted(batch: Batch, response: ApiResponse, attempts: int) -> BatchOutcome:
        body = response.body if isinstance(response.body, dict) else {}
        if body.get("accepted") != batch.count:
            return BatchOutcome(
                batch,
                "failed",
                message=f"the API answered {response.status} but accepted "
                f"{body.get('accepted')!r} of {batch.count} records: {str(response.body)[:200]}",
                attempts=attempts,
            )
        replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        return BatchOutcome(
            batch,
            "accepted",
            batch_id=str(body.get("batchId", "")),
            ids=list(body.get("ids", [])),
            attempts=attempts,
            replayed=replayed,
        )

    @staticmethod
    def _refused(batch: Batch, response: ApiResponse, attempts: int) -> BatchOutcome:
        details: list[dict[str, Any]] = []
        if isinstance(response.body, dict) and isinstance(response.body.get("error"), dict):
            details = [d for d in response.body["error"].get("details") or [] if isinstance(d, dict)]
        return BatchOutcome(
            batch,
            "rejected",
            message=f"HTTP {response.status} {response.error_message()}",
            details=details,
            attempts=attempts,
        )


def _retry_after(response: ApiResponse) -> float | None:
    value = {k.lower(): v for k, v in response.headers.items()}.get("retry-after")
    try:
        return min(float(value), 60.0) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class BulkOptions:
    env: str
    max_records: int
    max_bytes: int
    concurrency: int = 4
    resume: bool = False
    restart: bool = False
    journal_dir: Path | None = None  # None: no journal (stdin without a file, or --no-journal)


def bulk_send(
    open_input: Callable[[], BinaryIO],
    input_name: str,
    client: ApiClient,
    options: BulkOptions,
    input_options: InputOptions,
    progress: Progress | None = None,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SendSummary:
    """Load one input. `open_input` is called twice: once to hash it (journal key), once to read it."""
    progress = progress or NoProgress()
    started = time.monotonic()
    with open_input() as stream:
        sha256, line_count = file_digest(stream)
    limits = {"maxRecords": options.max_records, "maxBytes": options.max_bytes}
    journal: Journal | None = None
    if options.journal_dir is not None:
        key = journal_key(options.env, sha256, input_options.fingerprint(), limits)
        meta = {"input": input_name, "sha256": sha256, "env": options.env, **limits}
        journal = Journal.open(options.journal_dir, key, meta, options.resume, options.restart)
    summary = SendSummary(
        journal=journal.path if journal else None, resumed=bool(journal and journal.resumed)
    )
    sender = BatchSender(client, policy, progress, sleep)
    progress.start(line_count)
    invalid: list[InvalidLine] = []
    reported_invalid = 0

    def report_invalid() -> None:
        nonlocal reported_invalid
        if len(invalid) > reported_invalid:
            progress.error(len(invalid) - reported_invalid)
            progress.advance(len(invalid) - reported_invalid)
            reported_invalid = len(invalid)

    with open_input() as stream, ThreadPoolExecutor(max_workers=options.concurrency) as pool:
        pending: set[Future[BatchOutcome]] = set()
        todo: Iterator[Batch] = batches(
            read_items(stream, input_options), options.max_records, options.max_bytes, invalid
        )
        for batch in todo:
            report_invalid()
            if journal is not None and batch.index in journal.accepted:
                done = journal.accepted[batch.index]
                summary.accepted_records += batch.count
                summary.resumed_records += batch.count
                summary.accepted_batches += 1
                summary.batch_ids.append(str(done["batchId"]))
                progress.advance(batch.count)
                continue
            key = journal.will_send(batch.index, batch.lines) if journal else f"rtp-send-{uuid.uuid4().hex}"
            pending.add(pool.submit(sender.send, batch, key))
            if len(pending) >= options.concurrency * 2:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    _record(future.result(), summary, journal, progress)
        report_invalid()
        for future in pending:
            _record(future.result(), summary, journal, progress)
    summary.rejected = sorted([*invalid, *summary.rejected], key=lambda problem: problem.line)
    if journal is not None and summary.ok:
        journal.finish()
    if journal is not None and not journal.path.exists():
        summary.journal = None  # nothing was sent: there is nothing to resume
    summary.elapsed_seconds = time.monotonic() - started
    return summary


def _record(outcome: BatchOutcome, summary: SendSummary, journal: Journal | None, progress: Progress) -> None:
    batch = outcome.batch
    summary.retries += max(outcome.attempts - 1, 0)
    if outcome.status == "accepted":
        if journal is not None:
            journal.record_accepted(batch.index, outcome.batch_id, batch.count)
        summary.accepted_records += batch.count
        summary.accepted_batches += 1
        summary.replayed_batches += int(outcome.replayed)
        summary.batch_ids.append(outcome.batch_id)
        progress.advance(batch.count)
        return
    progress.error(batch.count)
    progress.advance(batch.count)
    if outcome.status == "failed":
        summary.failed.append((batch.lines, outcome.message))
        return
    by_index: dict[int, list[str]] = {}
    for detail in outcome.details:
        index = detail.get("index")
        if isinstance(index, int) and 0 <= index < batch.count:
            by_index.setdefault(index, []).append(
                f"{detail.get('field', '')} {detail.get('message', '')}".strip()
            )
    for index, line in enumerate(batch.lines):
        reasons = by_index.get(index)
        reason = "; ".join(reasons) if reasons else f"batch refused ({outcome.message})"
        summary.rejected.append(InvalidLine(line, f"rejected by the API: {reason}"))


# --- waiting for processing ------------------------------------------------------------------------


@dataclass
class ProcessingReport:
    complete: int = 0
    processed: int = 0
    rejected: int = 0
    duplicates: int = 0
    pending_batches: list[str] = field(default_factory=list)


def wait_for_batches(
    client: ApiClient, batch_ids: list[str], timeout: float, interval: float = 0.5
) -> ProcessingReport:
    """Poll GET /batches/{id} until every batch is COMPLETE or the timeout passes.

    In the order sent, each round stopping at the first batch not complete yet: the queue hands claim
    checks out about in that order, so the later ones are most likely still running too, and a batch is
    polled about once after it completes instead of once per round while it waits (a load of 100 batches
    polled every half second would ask for each of them dozens of times). The round at the timeout polls
    every batch left, so that the report counts each one that did complete."""
    deadline = time.monotonic() + timeout
    remaining = list(dict.fromkeys(batch_ids))
    report = ProcessingReport()
    while remaining:
        last_round = time.monotonic() >= deadline
        still: list[str] = []
        for position, batch_id in enumerate(remaining):
            if still and not last_round:
                still.extend(remaining[position:])
                break
            response = client.get_batch(batch_id)
            view = response.body if response.ok and isinstance(response.body, dict) else None
            if view is not None and view.get("status") == "COMPLETE":
                report.complete += 1
                report.processed += int(view.get("processed", 0))
                report.rejected += int(view.get("rejected", 0))
                report.duplicates += int(view.get("duplicates", 0))
            else:
                still.append(batch_id)
        remaining = still
        if not remaining or last_round:
            break
        time.sleep(interval)
    report.pending_batches = remaining
    return report


# --- smoke test --------------------------------------------------------------------------------------


@dataclass
class SmokeRecord:
    shape: str
    record: dict[str, Any]
    expected: str
    record_id: str = ""
    sent_at: float = 0.0
    status: str = ""  # PROCESSED | REJECTED | "" (never seen)
    latency_ms: float | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == self.expected


@dataclass
class SmokeResult:
    records: list[SmokeRecord]
    timed_out: bool
    timeout: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and not self.timed_out and all(r.ok for r in self.records)


def smoke_records(run: str, now: datetime | None = None) -> tuple[SmokeRecord, list[SmokeRecord]]:
    """(the single-record request, the records of the batch request): one of each shape."""
    now = now or datetime.now(UTC)
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    future = (now + timedelta(hours=1)).isoformat(timespec="seconds").replace("+00:00", "Z")
    single = SmokeRecord(
        "single record, not batched",
        {
            "id": f"{run}-single",
            "type": "smoke.single",
            "data": {"n": 1},
            "timestamp": stamp,
            "source": "rtp-send",
        },
        "PROCESSED",
    )
    batch = [
        SmokeRecord(
            "batch: full record",
            {
                "id": f"{run}-full",
                "type": "smoke.full",
                "data": {"n": 2, "nested": {"ok": True}, "x": 1.5},
                "timestamp": stamp,
                "source": "rtp-send",
            },
            "PROCESSED",
        ),
        SmokeRecord(
            "batch: minimal (no id: API assigns it)", {"type": "smoke.minimal", "data": {"n": 3}}, "PROCESSED"
        ),
        SmokeRecord(
            "batch: empty data (must be rejected)",
            {"id": f"{run}-empty", "type": "smoke.empty", "data": {}},
            "REJECTED",
        ),
        SmokeRecord(
            "batch: timestamp 1 h ahead (must be rejected)",
            {"id": f"{run}-future", "type": "smoke.future", "data": {"n": 5}, "timestamp": future},
            "REJECTED",
        ),
    ]
    return single, batch


def smoke_test(
    client: ApiClient,
    timeout: float = 60.0,
    interval: float = 0.25,
    run: str | None = None,
    on_update: Callable[[list[SmokeRecord]], None] | None = None,
) -> SmokeResult:
    run = run or f"smoke-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    single, in_batch = smoke_records(run)
    records = [single, *in_batch]
    # Send: one bare record, then one batch (with an Idempotency-Key, as producers should).
    for body, members, key in (
        (encode(single.record), [single], None),
        (encode({"records": [r.record for r in in_batch]}), in_batch, f"{run}-batch"),
    ):
        sent_at = time.monotonic()
        try:
            response = client.post_records(body, key)
        except requests.RequestException as error:
            return SmokeResult(records, False, timeout, f"cannot reach the API at {client.base}: {error}")
        if response.status != 202:
            return SmokeResult(
                records,
                False,
                timeout,
                f"POST /records answered {response.status} (expected 202): {response.error_message()}",
            )
        ids = response.body.get("ids", []) if isinstance(response.body, dict) else []
        if len(ids) != len(members):
            return SmokeResult(records, False, timeout, f"POST /records returned ids {ids!r}")
        for member, record_id in zip(members, ids, strict=True):
            member.record_id, member.sent_at = str(record_id), sent_at
    # Wait for each record to reach a final status.
    deadline = time.monotonic() + timeout
    waiting = list(records)
    while waiting:
        for member in list(waiting):
            try:
                response = client.get_record(member.record_id)
            except requests.RequestException as error:
                member.detail = f"GET failed: {error}"
                continue
            if response.ok and isinstance(response.body, dict) and response.body.get("status"):
                member.status = str(response.body["status"])
                member.latency_ms = (time.monotonic() - member.sent_at) * 1000
                member.detail = str(response.body.get("reason") or "")
                waiting.remove(member)
            elif response.status != 404:
                member.detail = f"GET /records answered {response.status}: {response.error_message()}"
        if on_update:
            on_update(records)
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    for member in waiting:
        member.detail = member.detail or "accepted but never processed (still queued?)"
    return SmokeResult(records, bool(waiting), timeout)
