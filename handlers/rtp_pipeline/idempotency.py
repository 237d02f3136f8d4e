"""Idempotency keys: a client's `Idempotency-Key` header names its batch.

A request with a key gets a batch id made from the key (`keyed_batch_id`): its own 10 characters of arrival
time (ULID order, which the raw object's name and `rtp reconcile` rely on), `K`, and 16 characters of the
key's SHA-256. The batch item's key leaves the time out (`rtp_pipeline.storage.batch_pk`), so every
request with the key meets the same item: writing the batch item (a conditional put) is the key's claim,
and one write serves both. A refused put returns the item already there (no read): its `requestHash` says
whether the retry carries the same body (else 422), its `batchId` which batch the client was given.

A key lives as long as its batch item (`retention.record_ttl_days`, at least a day). A retry cannot tell
whether the first request got as far as enqueueing: while the batch is not settled yet, it enqueues the
first request's claim check again, marked `resent` (ingest).
"""

from __future__ import annotations

import hashlib
from typing import Any

from rtp_pipeline.storage import CROCKFORD, ClaimCheck

MAX_KEY_CHARS = 255


def keyed_batch_id(key: str, now_ms: int) -> str:
    """The batch id of a request with this key arriving at `now_ms`: time (10), `K`, key hash (16)."""
    time_part = "".join(CROCKFORD[(now_ms >> shift) & 31] for shift in range(45, -1, -5))
    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:10], "big")
    return time_part + "K" + "".join(CROCKFORD[(digest >> shift) & 31] for shift in range(75, -1, -5))


def request_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def claim_check_of(batch: dict[str, Any], bucket: str) -> ClaimCheck:
    """The claim check of a batch, rebuilt from its item (what ingest sends again for a retry)."""
    return ClaimCheck(
        batch_id=str(batch["batchId"]),
        bucket=bucket,
        key=str(batch["rawKey"]),
        correlation_id=str(batch.get("correlationId", "")),
        received_at=str(batch["receivedAt"]),
        record_count=int(batch["accepted"]),
        by_record=batch.get("byRecord") is True,
    )
