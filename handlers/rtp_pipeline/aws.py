"""boto3 clients shared by a function's invocations (created once per execution environment)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Standard retry mode: exponential backoff with jitter on throttling and transient errors, bounded so a
# slow dependency fails the invocation well inside the function timeout instead of hanging it.
SDK_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10)
# DynamoDB checks every request itself (a ValidationException, which the store handles per record), and
# botocore's own check walks every attribute of every item: 18 % of the processor's CPU (python -m bench
# handler_speed). botocore: "You can disable parameter validation for performance reasons."
# https://botocore.amazonaws.com/v1/documentation/api/latest/reference/config.html
UNVALIDATED = {"dynamodb"}


@cache
def client(service: str) -> Any:
    config = SDK_CONFIG.merge(Config(parameter_validation=False)) if service in UNVALIDATED else SDK_CONFIG
    return boto3.client(service, config=config)  # type: ignore[call-overload]
