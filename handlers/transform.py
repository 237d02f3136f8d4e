"""The transform: the one module you replace with your own business logic.

Replace this file wholesale with a module that defines ``transform(record, context) -> dict`` and imports
its contract from `rtp_pipeline.contract` (which documents what a transform gets, may raise and must
return). Raise `RejectRecord("why")` for a record that can never be processed; any other exception is a
transient fault, retried.

The default below normalises, enriches with timing and a content hash, and rejects records that carry no
data or claim to come from the future.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from rtp_pipeline.contract import RejectRecord, TransformContext
from rtp_pipeline.validation import parse_rfc3339

# Producers' clocks drift; anything further ahead than this is a bug upstream, not a real event.
MAX_CLOCK_SKEW = timedelta(minutes=5)


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
