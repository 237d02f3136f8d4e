"""Processing one claim check: read the raw request, validate and transform each record, store outcomes.

A record the schema or the transform refuses is stored as REJECTED with its reason and never retried.
Anything else that goes wrong (S3, DynamoDB, a transform's downstream call) raises, so the SQS message
fails on its own, is redelivered, and after maxReceiveCount lands in the dead-letter queue.
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from transform import RejectRecord, TransformContext

from rtp_pipeline.ingest import record_ids
from rtp_pipeline.settings import Settings
from rtp_pipeline.storage import (
    PROCESSED,
    REJECTED,
    ClaimCheck,
    Outcome,
    PipelineTable,
    RawStore,
    serialize,
    ttl,
)
from rtp_pipeline.validation import extract_records, parse_rfc3339, validate_record

# DynamoDB items are at most 400 KB; keep room for the keys and bookkeeping attributes.
MAX_RESULT_BYTES = 350 * 1024

Transform = Callable[[dict[str, Any], TransformContext], dict[str, Any]]


@dataclass(frozen=True)
class BatchResult:
    batch_id: str
    processed: int
    rejected: int
    newly_processed: int  # stored by this delivery (0 when an earlier delivery already stored them)
    newly_rejected: int
    latency_ms: float


class Processor:
    def __init__(self, settings: Settings, raw: RawStore, table: PipelineTable, transform: Transform) -> None:
        self.settings, self.raw, self.table, self.transform = settings, raw, table, transform

    def process(self, claim: ClaimCheck, now: datetime | None = None) -> BatchResult:
        started = now or datetime.now(UTC)
        # Plain floats, as the transform contract promises (JSON-compatible values); they become DynamoDB
        # numbers when stored. Ingest refused NaN and infinities before accepting the body.
        payload = json.loads(self.raw.get(claim.bucket, claim.key))
        records, is_batch, envelope = extract_records(payload, max_records=max(claim.record_count, 1))
        if envelope or len(records) != claim.record_count:
            # Ingest validated this body before enqueueing it; a mismatch means the object was replaced.
            raise ValueError(
                f"raw object {claim.key} does not hold the {claim.record_count} records accepted"
            )
        received_at = parse_rfc3339(claim.received_at)
        ids = record_ids(claim.batch_id, records)
        outcomes = [
            self._outcome(record, record_id, index, is_batch, claim, received_at, started)
            for index, (record, record_id) in enumerate(zip(records, ids, strict=True))
        ]
        stored = self.table.store_outcomes(
            claim.batch_id, outcomes, ttl(started, days=self.settings.record_ttl_days), started
        )
        processed = sum(1 for outcome in outcomes if outcome.status == PROCESSED)
        newly_processed = sum(1 for outcome in stored if outcome.status == PROCESSED)
        return BatchResult(
            batch_id=claim.batch_id,
            processed=processed,
            rejected=len(outcomes) - processed,
            newly_processed=newly_processed,
            newly_rejected=len(stored) - newly_processed,
            latency_ms=(started - received_at).total_seconds() * 1000,
        )

    def _outcome(
        self,
        record: Any,
        record_id: str,
        index: int,
        is_batch: bool,
        claim: ClaimCheck,
        received_at: datetime,
        processed_at: datetime,
    ) -> Outcome:
        record_type = str(record.get("type", "unknown")) if isinstance(record, dict) else "unknown"
        violations = validate_record(record, index, f"records[{index}]." if is_batch else "")
        if violations:
            reason = "; ".join(f"{v.field} {v.message}" for v in violations)
            return Outcome(record_id, REJECTED, record_type, reason=f"schema: {reason}")
        context = TransformContext(record_id, claim.batch_id, claim.correlation_id, received_at, processed_at)
        try:
            result = self.transform(record, context)
        except RejectRecord as rejection:
            return Outcome(record_id, REJECTED, record_type, reason=rejection.reason)
        try:
            size = len(json.dumps(result, allow_nan=False))
            serialize({"result": result})  # what DynamoDB can hold: no NaN, at most 38 significant digits
        except (TypeError, ValueError, decimal.DecimalException) as error:
            return Outcome(record_id, REJECTED, record_type, reason=f"result cannot be stored: {error!r}")
        if size > MAX_RESULT_BYTES:
            return Outcome(
                record_id,
                REJECTED,
                record_type,
                reason=f"result is {size} bytes; at most {MAX_RESULT_BYTES} can be stored",
            )
        return Outcome(record_id, PROCESSED, str(result.get("type", record_type)), result=result)
