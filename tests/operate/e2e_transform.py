"""The default transform plus a fault switch for the DLQ incident test: a record whose data names a file
with `failWhileExists` fails (a transient fault: the SQS message is retried, then dead-lettered) for as
long as that file exists. Deleting the file is "the fix". Loaded by the local runtime with
`--transform tests.operate.e2e_transform:transform`."""

from __future__ import annotations

import os
from typing import Any

from rtp_pipeline.contract import TransformContext
from transform import transform as default_transform


def transform(record: dict[str, Any], context: TransformContext) -> dict[str, Any]:
    flag = record["data"].get("failWhileExists")
    if isinstance(flag, str) and os.path.exists(flag):
        raise RuntimeError(f"downstream unavailable (test fault: {flag} exists)")
    return default_transform(record, context)
