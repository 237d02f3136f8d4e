"""Accepting a request: keep the raw body, validate it, enqueue one claim check, answer 202.

Order matters: the raw body is written to S3 before anything can reject it, so even a request that
fails validation can be inspected later. An `Idempotency-Key` makes a retried request return the
first answer (with the first request's batch id); nothing is stored or counted twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rtp_pipeline.errors import ApiError
from rtp_pipeline.idempotency import IdempotencyKeys
from rtp_pipeline.settings import Settings
from rtp_pipeline.storage import (
    ClaimCheck,
    ClaimCheckQueue,
    PipelineTable,
    RawStore,
    counted_by_record,
    ttl,
)
from rtp_pipeline.validation import JsonDocumentError, parse_json_document, validate_request

IDEMPOTENCY_KEY = "idempotency-key"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Ids the API assigns (`record_ids`): a batch id (a ULID, 26 Crockford base32 characters), a dash, an index.
DERIVED_ID = re.compile(rf"[{_CROCKFORD}]{{26}}-[0-9]+")
# A refused request lists at most this many problems (500 records could hold thousands), so the error
# answer stays small.
MAX_DETAILS = 100


@dataclass(frozen=True)
class Accepted:
    response: dict[str, Any]
    replayed: bool


def new_batch_id(now_ms: int | None = None) -> str:
    """A ULID: 48-bit millisecond time + 80 random bits, Crockford base32. Sorts by arrival time."""
    value = ((now_ms if now_ms is not None else time.time_ns() // 1_000_000) << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def check_content_type(headers: dict[str, str]) -> None:
    content_type = headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"Content-Type must be application/json, got {content_type or 'nothing'}",
        )


class Ingestor:
    def __init__(
        self,
        settings: Settings,
        raw: RawStore,
        table: PipelineTable,
        queue: ClaimCheckQueue,
        keys: IdempotencyKeys | None = None,
    ) -> None:
        self.settings, self.raw, self.table, self.queue = settings, raw, table, queue
        self.keys = keys or IdempotencyKeys(table.db, table.name)  # the same table: one key of its own

    def accept(
        self, body: bytes, headers: dict[str, str], correlation_id: str, now: datetime | None = None
    ) -> Accepted:
        """`headers` must have lower-case names. Raises ApiError for anything the client must fix."""
        received = now or datetime.now(UTC)
        check_content_type(headers)
        if len(body) > self.settings.max_body_bytes:
            raise ApiError(
                413,
                "PAYLOAD_TOO_LARGE",
                f"request body is {len(body)} bytes; at most {self.settings.max_body_bytes} bytes allowed",
            )
        batch_id = new_batch_id(int(received.timestamp() * 1000))
        key = self.raw.key_for(batch_id, received)
        self.raw.put(key, body, correlation_id)

        records = self._parse(body)
        ids = record_ids(batch_id, records)
        claim = ClaimCheck(
            batch_id=batch_id,
            bucket=self.raw.bucket,
            key=key,
            correlation_id=correlation_id,
            received_at=received.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            record_count=len(records),
            by_record=counted_by_record(batch_id, ids),
        )
        response = {"batchId": batch_id, "accepted": len(records), "ids": ids}
        idempotency_key = headers.get(IDEMPOTENCY_KEY, "").strip()
        if idempotency_key:
            if len(idempotency_key) > 255:
                raise ApiError(400, "VALIDATION_ERROR", "Idempotency-Key must be at most 255 characters")
            request_hash = hashlib.sha256(body).hexdigest()
            earlier = self.keys.claim(
                received,
                idempotency_key,
                request_hash,
                claim,
                {"batchId": batch_id, "accepted": len(records)},  # the ids follow from the same body
                ttl(received, hours=self.settings.idempotency_ttl_hours),
            )
            if earlier is not None:
                return self._replay(earlier, request_hash, received, records)
        self._enqueue(claim, ids, received)
        return Accepted(response, replayed=False)

    def _replay(
        self,
        earlier: dict[str, Any],
        request_hash: str,
        received: datetime,
        records: list[dict[str, Any]],
    ) -> Accepted:
        if earlier["requestHash"] != request_hash:
            raise ApiError(
                422,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was already used with a different request body; use a new key",
            )
        response: dict[str, Any] = json.loads(earlier["response"])
        if "ids" not in response:  # the same body (same hash) gives the same ids under the first batch id
            response["ids"] = record_ids(response["batchId"], records)
        if not self.table.batch_settled(response["batchId"]):
            # The first request may have died before enqueueing, or may still be running: enqueue its claim
            # check (again). Its raw object exists (written before the key was claimed), the batch item is a
            # conditional put, and the processor stores and counts nothing twice however often a claim check
            # arrives (as for SQS's own duplicate deliveries). What a settled batch no longer needs: nothing.
            first = ClaimCheck.from_json(earlier["claimCheck"])
            self._enqueue(dataclasses.replace(first, resent=True), response["ids"], received)
        return Accepted(response, replayed=True)

    def _enqueue(self, claim: ClaimCheck, ids: list[str], received: datetime) -> None:
        self.table.create_batch(claim, ids, ttl(received, days=self.settings.record_ttl_days))
        self.queue.send(claim)

    def _parse(self, body: bytes) -> list[dict[str, Any]]:
        try:
            # Lone surrogates are left to validate_request, which names the record and field.
            payload = parse_json_document(body, reject_lone_surrogates=False)
        except JsonDocumentError as error:
            raise ApiError(400, "INVALID_JSON", f"request body: {error}") from None
        records, violations = validate_request(payload, self.settings.max_records)
        if violations:
            shown = "" if len(violations) <= MAX_DETAILS else f"; the first {MAX_DETAILS} are listed"
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                f"{len(violations)} validation error(s); nothing was accepted{shown}",
                [violation.as_dict() for violation in violations[:MAX_DETAILS]],
            )
        duplicates = duplicate_ids(records)
        if duplicates:
            raise ApiError(400, "VALIDATION_ERROR", "record ids must be unique within a request", duplicates)
        reserved = reserved_ids(records)
        if reserved:
            raise ApiError(
                400,
                "VALIDATION_ERROR",
                "ids of the form <batchId>-<index> (a 26-character batch id, a dash, a number) are the ones "
                "the API assigns to records without an id; choose another id",
                reserved[:MAX_DETAILS],
            )
        return records


def record_ids(batch_id: str, records: list[dict[str, Any]]) -> list[str]:
    """The client's id, or `<batchId>-<index>`: deterministic, so the processor derives the same ids."""
    return [str(record.get("id") or f"{batch_id}-{index}") for index, record in enumerate(records)]


def reserved_ids(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Client ids shaped like the ids the API assigns: refused, because only a record's own batch may
    write an assigned id (storage writes those without a condition, under a chunk lease)."""
    return [
        {"index": index, "field": f"records[{index}].id", "message": "has the form of an id the API assigns"}
        for index, record in enumerate(records)
        if isinstance(record.get("id"), str) and DERIVED_ID.fullmatch(record["id"])
    ]


def duplicate_ids(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, int] = {}
    details = []
    for index, record in enumerate(records):
        record_id = record.get("id")
        if record_id is None:
            continue
        if record_id in seen:
            details.append(
                {
                    "index": index,
                    "field": f"records[{index}].id",
                    "message": f"duplicates records[{seen[record_id]}].id",
                }
            )
        else:
            seen[record_id] = index
    return details
