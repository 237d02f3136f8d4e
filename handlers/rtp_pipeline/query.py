"""Read models for GET /records/{id} and GET /batches/{batchId}."""

from __future__ import annotations

from typing import Any

from rtp_pipeline.errors import ApiError
from rtp_pipeline.storage import PipelineTable

_INTERNAL = {"pk", "gsi1pk", "gsi1sk"}


def record_view(table: PipelineTable, record_id: str) -> dict[str, Any]:
    item = table.get_record(record_id)
    if item is None:
        raise ApiError(404, "NOT_FOUND", f"no record {record_id!r} (it may still be queued: check its batch)")
    return {key: value for key, value in item.items() if key not in _INTERNAL}


def batch_view(table: PipelineTable, batch_id: str) -> dict[str, Any]:
    item = table.get_batch(batch_id)
    if item is None:
        raise ApiError(404, "NOT_FOUND", f"no batch {batch_id!r}")
    done = item["processed"] + item["rejected"] + item["duplicates"]
    return {
        "batchId": item["batchId"],
        "status": "COMPLETE" if done >= item["accepted"] else "IN_PROGRESS",
        "accepted": item["accepted"],
        "processed": item["processed"],
        "rejected": item["rejected"],
        "duplicates": item["duplicates"],
        "pending": max(item["accepted"] - done, 0),
        "receivedAt": item["receivedAt"],
        "correlationId": item.get("correlationId", ""),
        "lastError": item.get("lastError"),
        "ids": item.get("ids", []),
    }
