"""POST /records' request model (API Gateway validates bodies against it), without the CDK: the local API
and its tests read the same schema the stack deploys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stack.project import HANDLERS_DIR

RECORD_SCHEMA_PATH = HANDLERS_DIR / "rtp_pipeline" / "record.schema.json"


def load_record_schema(path: Path = RECORD_SCHEMA_PATH) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def request_schema(record: dict[str, Any], max_records: int) -> dict[str, Any]:
    """POST /records body: one record, or {"records": [1..max_records records]}."""
    item = {key: value for key, value in record.items() if key not in ("$schema", "description")}
    return {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "title": "IngestRequest",
        "oneOf": [
            item,
            {
                "type": "object",
                "required": ["records"],
                "additionalProperties": False,
                "properties": {
                    "records": {"type": "array", "minItems": 1, "maxItems": max_records, "items": item}
                },
            },
        ],
    }
