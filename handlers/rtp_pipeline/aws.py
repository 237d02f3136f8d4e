"""boto3 clients shared by a function's invocations (created once per execution environment)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Standard retry mode: exponential backoff with jitter on throttling and transient errors, bounded so a
# slow dependency fails the invocation well inside the function timeout instead of hanging it.
SDK_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=SDK_CONFIG)  # type: ignore[call-overload]
