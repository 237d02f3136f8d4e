"""Accepting a request: keep the raw body, validate it, enqueue one claim check, answer 202.

Order matters: the raw body is written to S3 before anything can reject it, so even a request that
fails validation can be inspected later. An `Idempotency-Key` makes a retried request return the
first answer (with the first request's batch id); nothing is stored or counted twice.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rtp_pipeline.errors import ApiError
from rtp_pipeline.idempotency import MAX_KEY_CHARS, claim_check_of, keyed_batch_id, request_hash
from rtp_pipeline.settings import Settings
from rtp_pipeline.storage import (
    BATCH_ID,
    CROCKFORD,
    ClaimCheck,
    ClaimCheckQueue,
    PipelineTable,
    RawStore,
    counted_by_record,
    ttl,
)
from rtp_pipeline.validation import JsonDocumentError, parse_json_document, validate_request

IDEMPOTENCY_KEY = "idempotency-key"
# Ids the API assigns (`record_ids`): a batch id (`BATCH_ID`: a ULID, or a keyed one), a dash, an index.
DERIVED_ID = re.compile(rf"(?:{BATCH_ID.pattern})-[0-9]+")
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
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


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
        self, settings: Settings, raw: RawStore, table: PipelineTable, queue: ClaimCheckQueue
    ) -> None:
        self.settings, self.raw, self.table, self.queue = settings, raw, table, queue

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
        idempotency_key = headers.get(IDEMPOTENCY_KEY, "").strip()
        if len(idempotency_key) > MAX_KEY_CHARS:
            raise ApiError(
                400, "VALIDATION_ERROR", f"Idempotency-Key must be at most {MAX_KEY_CHARS} characters"
            )
        now_ms = int(received.timestamp() * 1000)
        batch_id = keyed_batch_id(idempotency_key, now_ms) if idempotency_key else new_batch_id(now_ms)
        key = self.raw.key_for(batch_id, received)
        if not self.raw.put(key, body, correlation_id, exclusive=bool(idempotency_key)):
            # Another request with this key arrived in the same millisecond (so with the same batch id):
            # its body is kept, this one is not stored. The client's retry is answered as a retry.
            raise ApiError(
                409,
                "IDEMPOTENCY_KEY_IN_USE",
                "another request with this Idempotency-Key arrived at the same moment; retry with the same "
                "key",
            )

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
        body_hash = request_hash(body) if idempotency_key else None
        earlier = self.table.create_batch(
            claim, ids, ttl(received, days=self.settings.record_ttl_days), received, body_hash
        )
        if earlier is not None:  # only a keyed batch id meets an item already there
            return self._replay(earlier, body_hash, records)
        self.queue.send(claim)
        return Accepted({"batchId": batch_id, "accepted": len(records), "ids": ids}, replayed=False)

    def _replay(
        self, earlier: dict[str, Any], body_hash: str | None, records: list[dict[str, Any]]
    ) -> Accepted:
        """A retry of an earlier request with the same Idempotency-Key: the first request's answer."""
        if body_hash is None or earlier.get("requestHash") != body_hash:
            raise ApiError(
                422,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was already used with a different request body; use a new key",
            )
        batch_id = str(earlier["batchId"])
        ids = record_ids(batch_id, records)  # the same body (same hash): the same ids under the first batch
        response = {"batchId": batch_id, "accepted": int(earlier["accepted"]), "ids": ids}
        if not self.table.batch_settled(batch_id):
            if earlier.get("clientIds"):  # the first request may have died before writing them
                self.table.put_ids(batch_id, ids, ttl_at(earlier))
            # The first request may have died before enqueueing, or may still be running: send its claim
            # check (again), marked `resent` so that the processor reads it like a redelivery. Its raw
            # object exists (written before the batch item), and the processor stores and counts nothing
            # twice however often a claim check arrives. A settled batch needs nothing.
            self.queue.send(dataclasses.replace(claim_check_of(earlier, self.raw.bucket), resent=True))
        return Accepted(response, replayed=True)

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
                "ids of the form <batchId>-<index> (a 26- or 27-character batch id, a dash, a number) are "
                "the ones the API assigns to records without an id; choose another id",
                reserved[:MAX_DETAILS],
            )
        return records


def ttl_at(batch: dict[str, Any]) -> datetime:
    """When a batch item (deserialized) expires."""
    return datetime.fromtimestamp(int(batch["expiresAt"]), UTC)


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
