"""The handler tests' view of the in-process local runtime (rtp_cli/local/inprocess.py: the template's
resources in moto by the local runtime's provisioner, its routes, event builders and event source mapping
rules), plus what only tests need: the API's error-shape assertion and fault injection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

from rtp_cli.local.inprocess import (
    ACCOUNT,
    ESM,
    LAMBDA_ENVIRONMENT,
    REGION,
    ApiCall,
    ApiResponse,
    CallRecorder,
    Delivery,
    Pipeline,
    Resolver,
    provision_template,
    reset_clients,
    standalone_pipeline,
)
from rtp_cli.local.inprocess import proxy_event as api_event

__all__ = [
    "ACCOUNT",
    "ESM",
    "LAMBDA_ENVIRONMENT",
    "REGION",
    "ApiCall",
    "ApiResponse",
    "CallRecorder",
    "Delivery",
    "Pipeline",
    "Resolver",
    "api_event",
    "assert_error",
    "fail_calls",
    "provision_template",
    "reset_clients",
    "standalone_pipeline",
]


def assert_error(response: ApiResponse, status: int, code: str, request_id: str | None = None) -> list[Any]:
    """The one error shape: {"error": {"code", "message", "details": [...], "requestId"}}."""
    assert response.status == status, response.body
    assert response.headers.get("content-type") == "application/json"
    assert set(response.body) == {"error"}
    error = response.body["error"]
    assert set(error) == {"code", "message", "details", "requestId"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    if request_id is not None:
        assert error["requestId"] == request_id
    details: list[Any] = error["details"]
    return details


def fail_calls(
    client: Any, operation: str, when: Callable[[dict[str, Any]], bool], code: str, status: int = 503
) -> list[dict[str, Any]]:
    """Make `client`'s calls to `operation` whose API parameters match `when` fail with the AWS error
    `code` (HTTP `status`), as a throttled or failing service would. The call is still made as far as the
    recorder is concerned. Returns the parameters of the calls that were failed."""
    failed: list[dict[str, Any]] = []

    def mark(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if when(params):
            context["inject_fault"] = True
            failed.append(dict(params))

    def before_call(context: dict[str, Any], **_: Any) -> Any:
        if not context.get("inject_fault"):
            return None
        parsed = {
            "Error": {"Code": code, "Message": f"injected {code}"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return AWSResponse("https://fault.invalid", status, HTTPHeaders(), None), parsed

    client.meta.events.register(f"provide-client-params.*.{operation}", mark)
    client.meta.events.register(f"before-call.*.{operation}", before_call)
    return failed
