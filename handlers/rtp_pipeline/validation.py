"""Request and record validation against `record.schema.json`.

The schema file is the single source of truth: the stack turns it into the API Gateway request model, and
this module checks the same rules inside the function (API Gateway validates only JSON bodies it can match
to a model, and the processor re-checks what it reads back from S3). The interpreter below covers exactly
the JSON Schema draft-04 keywords the schema uses; `SUPPORTED_KEYWORDS` is checked by a test so that a
keyword added to the schema cannot be silently ignored here. It has no third-party dependency because
the Lambda runtime only has the standard library, boto3 and the Powertools layer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("record.schema.json")

SUPPORTED_KEYWORDS = frozenset(
    {
        "$schema",
        "title",
        "description",
        "type",
        "required",
        "additionalProperties",
        "properties",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "items",
    }
)

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


@dataclass(frozen=True)
class Violation:
    """One broken rule: `index` is the record's position in the request (None for the envelope)."""

    field: str
    message: str
    index: int | None = None

    def as_dict(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"field": self.field, "message": self.message}
        if self.index is not None:
            detail["index"] = self.index
        return detail


@cache
def record_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


def validate_record(record: Any, index: int | None = None, prefix: str = "") -> list[Violation]:
    return [Violation(field, message, index) for field, message in _check(record_schema(), record, prefix)]


def extract_records(payload: Any, max_records: int) -> tuple[list[Any], bool, list[Violation]]:
    """Split a request body into records: one record, or `{"records": [...]}`.

    Returns (records, is_batch, envelope violations). Records are not validated here.
    """
    if isinstance(payload, dict) and "records" in payload:
        extra = sorted(set(payload) - {"records"})
        records = payload["records"]
        if extra:
            return [], True, [Violation(extra[0], "is not allowed next to 'records'")]
        if not isinstance(records, list):
            return [], True, [Violation("records", "must be an array of records")]
        if not records:
            return [], True, [Violation("records", "must contain at least 1 record")]
        if len(records) > max_records:
            return (
                [],
                True,
                [Violation("records", f"has {len(records)} records; at most {max_records} per request")],
            )
        return records, True, []
    if isinstance(payload, dict):
        return [payload], False, []
    return [], False, [Violation("(body)", 'must be a JSON object: one record or {"records": [...]}')]


def validate_request(payload: Any, max_records: int) -> tuple[list[dict[str, Any]], list[Violation]]:
    """Validate a whole request body. Returns its records and every violation found."""
    records, is_batch, violations = extract_records(payload, max_records)
    if violations:
        return [], violations
    for index, record in enumerate(records):
        violations.extend(validate_record(record, index, f"records[{index}]." if is_batch else ""))
    return records, violations


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 timestamp that already matched the schema pattern into an aware datetime."""
    normalised = value.replace("t", "T").replace(" ", "T").replace("z", "Z").replace("Z", "+00:00")
    return datetime.fromisoformat(normalised)


def _check(schema: dict[str, Any], value: Any, path: str) -> list[tuple[str, str]]:
    field = path.rstrip(".") or "(body)"
    expected = schema.get("type")
    if expected is not None and not _is_type(value, expected):
        return [(field, f"must be of type {expected}")]
    errors: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                errors.append((f"{path}{name}", "is required"))
        properties: dict[str, Any] = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            errors.extend((f"{path}{name}", "is not allowed") for name in value if name not in properties)
        for name, subschema in properties.items():
            if name in value:
                errors.extend(_check(subschema, value[name], f"{path}{name}."))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append((field, f"must be at least {schema['minLength']} characters"))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append((field, f"must be at most {schema['maxLength']} characters"))
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            errors.append((field, f"does not match the required format {schema['pattern']}"))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append((field, f"must have at least {schema['minItems']} items"))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append((field, f"must have at most {schema['maxItems']} items"))
        if "items" in schema:
            for position, item in enumerate(value):
                errors.extend(_check(schema["items"], item, f"{path.rstrip('.')}[{position}]."))
    return errors


def _is_type(value: Any, expected: str) -> bool:
    if isinstance(value, bool) and expected in ("integer", "number"):
        return False  # JSON booleans are not numbers, although Python's bool is an int
    return isinstance(value, _JSON_TYPES[expected])


@cache
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
