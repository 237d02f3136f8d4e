"""The transform: the one module you replace with your own business logic.

Contract
--------
``transform(record, context) -> dict``

* ``record`` is one record that passed validation (``rtp_pipeline.validation``): a dict with ``type``
  (str), ``data`` (dict) and optionally ``id``, ``timestamp`` (a real RFC 3339 instant: ``parse_rfc3339``
  always succeeds on it) and ``source``. Every string is valid Unicode and ``data`` fits DynamoDB's
  rules (nesting, keys, numbers, size) when stored as ``result["data"]``.
* ``context`` (`TransformContext`) says where the record came from: its final ``record_id``, the
  ``batch_id``, the ``correlation_id`` of the API request, ``received_at`` (when the API accepted it) and
  ``processed_at`` (now), both timezone-aware UTC datetimes.
* Return a dict of JSON-compatible values (str, int, float, bool, None, list, dict). It is stored as the
  record's ``result`` in DynamoDB. Floats are stored as DynamoDB numbers. A result DynamoDB cannot hold
  (a lone surrogate, an empty key, a number beyond 38 digits or 1E-130..9.99E+125, nesting past 32
  levels, an item over 400,000 bytes with ~1 KB of bookkeeping) is stored as ``REJECTED`` with the
  reason, and its neighbours are stored as usual. Returning anything but a dict is a bug in the
  transform: it is treated as a fault (below), so the message can be redriven once the bug is fixed.
* Raise `RejectRecord("reason")` when the record can never be processed (bad business data). It is
  stored as ``REJECTED`` with that reason and is **not** retried.
* Any other exception means a transient fault (a downstream call failed). That record is retried in
  the same invocation (4 attempts in all, exponential backoff with full jitter, never past the
  function's remaining time less a reserve: 5 s, or a quarter of the time left for short timeouts); the
  other records of the message are stored meanwhile. If it still fails, the SQS message is redelivered,
  and the redelivery transforms only the records not yet stored; after
  ``processing.max_receive_count`` deliveries the message goes to the dead-letter queue.
* Be deterministic and free of side effects: a record can be transformed more than once (retries, and
  SQS delivers at least once), and only the first result is stored.

The default below normalises, enriches with timing and a content hash, and rejects records that carry no
data or claim to come from the future.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rtp_pipeline.validation import parse_rfc3339

# Producers' clocks drift; anything further ahead than this is a bug upstream, not a real event.
MAX_CLOCK_SKEW = timedelta(minutes=5)


class RejectRecord(Exception):  # noqa: N818 - reads as an instruction: raise RejectRecord("why")
    """Raised by a transform for a record that must be stored as REJECTED and never retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TransformContext:
    record_id: str
    batch_id: str
    correlation_id: str
    received_at: datetime
    processed_at: datetime


def transform(record: dict[str, Any], context: TransformContext) -> dict[str, Any]:
    data = record["data"]
    if not data:
        raise RejectRecord("data is empty: nothing to process")
    event_time = parse_rfc3339(record["timestamp"]) if "timestamp" in record else context.received_at
    if event_time - context.processed_at > MAX_CLOCK_SKEW:
        raise RejectRecord(
            f"timestamp {record['timestamp']} is in the future (more than {MAX_CLOCK_SKEW} ahead)"
        )
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {
        "type": record["type"].strip().lower(),
        "source": record.get("source", "unknown").strip(),
        "data": data,
        "eventTime": _iso(event_time),
        "receivedAt": _iso(context.received_at),
        "processedAt": _iso(context.processed_at),
        "ingestLatencyMs": round((context.processed_at - context.received_at).total_seconds() * 1000),
        "contentHash": "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
