"""A transform that imports cleanly on its own but fails inside a Lambda execution environment, for
`test_cli_errors`: the pre-start import check passes, then the processor's worker dies at start-up."""

from __future__ import annotations

import os
from typing import Any

if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
    raise RuntimeError("init failure for the test: this transform refuses to start in a function")


def transform(record: dict[str, Any], context: Any) -> dict[str, Any]:
    return dict(record)
