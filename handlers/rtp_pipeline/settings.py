"""Runtime settings, read from the function's environment (set by the stack, `stack/functions.py`).

Each handler names the variables it cannot run without and checks them when it is imported (the cold
start, `require_settings`): a function deployed or run locally without one fails its init with the
variable's name, instead of answering requests until the first call that needs it breaks on "". The
settings themselves are read on first use and cached (`current_settings`) per execution environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

# What each function cannot run without (the names of the stack's resources it uses).
INGEST_SETTINGS = ("TABLE_NAME", "BUCKET_NAME", "QUEUE_URL")
PROCESSOR_SETTINGS = ("TABLE_NAME", "BUCKET_NAME", "QUEUE_URL", "REPLAY_QUEUE_URL")
QUERY_SETTINGS = ("TABLE_NAME",)

_INTEGERS = ("MAX_RECORDS", "MAX_BODY_BYTES", "RECORD_TTL_DAYS")


class SettingsError(RuntimeError):
    """A variable the function needs is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    table_name: str
    bucket_name: str
    queue_url: str
    raw_prefix: str
    max_records: int
    max_body_bytes: int
    record_ttl_days: int
    replay_queue_url: str = ""  # the processor's second source (`rtp replay`); ingest never sends there
    # zlib for results of 200+ bytes of JSON (storage.COMPRESS_MIN_BYTES); RESULT_COMPRESSION=none: maps.
    compress_results: bool = True

    @classmethod
    def from_environment(
        cls, env: Mapping[str, str] | None = None, required: tuple[str, ...] = ("TABLE_NAME",)
    ) -> Settings:
        """The settings in `env` (default: the process environment). Raises SettingsError naming every
        variable of `required` that is missing or empty, and any integer setting that is not one."""
        source = os.environ if env is None else env
        missing = [name for name in required if not source.get(name, "").strip()]
        if missing:
            raise SettingsError(
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set in the function's "
                "environment (the stack sets it: stack/functions.py)"
            )
        numbers: dict[str, int] = {}
        defaults = {"MAX_RECORDS": "500", "MAX_BODY_BYTES": "3000000", "RECORD_TTL_DAYS": "90"}
        for name in _INTEGERS:
            text = source.get(name, defaults[name])
            try:
                numbers[name] = int(text)
            except ValueError:
                raise SettingsError(f"{name}={text[:40]!r} is not an integer") from None
        return cls(
            table_name=source.get("TABLE_NAME", ""),
            bucket_name=source.get("BUCKET_NAME", ""),
            queue_url=source.get("QUEUE_URL", ""),
            replay_queue_url=source.get("REPLAY_QUEUE_URL", ""),
            raw_prefix=source.get("RAW_PREFIX", "raw/"),
            max_records=numbers["MAX_RECORDS"],
            max_body_bytes=numbers["MAX_BODY_BYTES"],
            record_ttl_days=numbers["RECORD_TTL_DAYS"],
            compress_results=source.get("RESULT_COMPRESSION", "zlib").lower() != "none",
        )


def require_settings(names: tuple[str, ...]) -> None:
    """Check, at a handler's import, that the environment holds `names` (and well-formed integers)."""
    Settings.from_environment(required=names)


@cache
def current_settings() -> Settings:
    return Settings.from_environment()
