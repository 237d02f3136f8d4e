"""The transform contract: everything a transform (`handlers/transform.py`, the module you replace) may rely
on, and everything the processor expects of it. A transform imports from this module only:

    from rtp_pipeline.contract import RejectRecord, TransformContext

and defines ``transform(record, context) -> dict``. The processor (`rtp_pipeline.processing`) depends on this
module, never on `transform.py`; only the processor's handler (`queue_processor.py`) imports `transform`
to pick up your function. So `transform.py` can be replaced wholesale by a file of your own.

What the transform gets
-----------------------
* ``record``: one record that passed validation (`rtp_pipeline.validation`, the rules of
  `record.schema.json`): a dict with ``type`` (str) and ``data`` (dict), and optionally ``id``,
  ``timestamp`` (a real RFC 3339 instant: `rtp_pipeline.validation.parse_rfc3339` always succeeds on it)
  and ``source``. Every string is valid Unicode and ``data`` fits DynamoDB's rules (nesting, keys,
  numbers, size) when stored as ``result["data"]``. Numbers are plain ``int``/``float``.
* ``context`` (`TransformContext`): where the record came from: its final ``record_id``, the
  ``batch_id``, the ``correlation_id`` of the API request, ``received_at`` (when the API accepted it) and
  ``processed_at`` (now), both timezone-aware UTC datetimes.

What it must return
-------------------
A dict of JSON-compatible values (str, int, float, bool, None, list, dict). It is stored as the record's
``result`` in DynamoDB (floats as DynamoDB numbers) and the record becomes ``PROCESSED``. A result DynamoDB
cannot hold (a lone surrogate, an empty key, a number beyond 38 digits or 1E-130..9.99E+125, nesting past
32 levels, an item over 400,000 bytes with ~1 KB of bookkeeping) is stored as ``REJECTED`` with the reason,
and its neighbours are stored as usual. Returning anything but a dict is a bug in the transform: it is
treated as a transient fault (below), so the message can be redriven once the bug is fixed.

What it may raise
-----------------
* `RejectRecord("reason")`: the record can never be processed (bad business data). It is stored as
  ``REJECTED`` with that reason and is **not** retried.
* Any other exception: a transient fault (a downstream call failed). That record is retried in the same
  invocation (4 attempts in all, exponential backoff with full jitter, never past the function's remaining
  time less a reserve); the other records of the message are stored meanwhile. If it still fails, the SQS
  message is redelivered, and the redelivery transforms only the records not yet stored; after
  ``processing.max_receive_count`` deliveries the message goes to the dead-letter queue.

Be deterministic and free of side effects: a record can be transformed more than once (retries, and SQS
delivers at least once), and only the first result is stored (until `rtp replay` runs it again).

Its version
-----------
Every stored record says which transform produced it (``transformVersion``): the module's ``VERSION``
string if it defines one, else the first 12 hex digits of the SHA-256 of its source file, so that an edited
file is a new version without anyone remembering to bump a number. After fixing a transform, `rtp replay`
runs the affected records through it again and each replaced record shows the new version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["RejectRecord", "Transform", "TransformContext", "transform_version"]


class RejectRecord(Exception):  # noqa: N818 - reads as an instruction: raise RejectRecord("why")
    """Raised by a transform for a record that must be stored as REJECTED and never retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TransformContext:
    """Where a record came from (see the module docstring)."""

    record_id: str
    batch_id: str
    correlation_id: str
    received_at: datetime
    processed_at: datetime


# The transform's type: (record, context) -> result.
Transform = Callable[[dict[str, Any], TransformContext], dict[str, Any]]


def transform_version(module: ModuleType) -> str:
    """The transform module's `VERSION`, or a content hash of its source file (see the module docstring)."""
    declared = getattr(module, "VERSION", None)
    if isinstance(declared, str) and declared.strip():
        return declared.strip()[:64]
    source = getattr(module, "__file__", None)
    if not source:
        return "unknown"
    return hashlib.sha256(Path(source).read_bytes()).hexdigest()[:12]
