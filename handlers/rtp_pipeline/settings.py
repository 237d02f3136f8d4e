"""Runtime settings, read once from the function's environment (set by the stack)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Settings:
    table_name: str
    bucket_name: str
    queue_url: str
    raw_prefix: str
    max_records: int
    max_body_bytes: int
    record_ttl_days: int
    idempotency_ttl_hours: int = 24
    # zlib for results of 200+ bytes of JSON (storage.COMPRESS_MIN_BYTES); RESULT_COMPRESSION=none: maps.
    compress_results: bool = True

    @classmethod
    def from_environment(cls, env: dict[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        return cls(
            table_name=source["TABLE_NAME"],
            bucket_name=source.get("BUCKET_NAME", ""),
            queue_url=source.get("QUEUE_URL", ""),
            raw_prefix=source.get("RAW_PREFIX", "raw/"),
            max_records=int(source.get("MAX_RECORDS", "500")),
            max_body_bytes=int(source.get("MAX_BODY_BYTES", "3000000")),
            record_ttl_days=int(source.get("RECORD_TTL_DAYS", "90")),
            compress_results=source.get("RESULT_COMPRESSION", "zlib").lower() != "none",
        )


@cache
def current_settings() -> Settings:
    return Settings.from_environment()
