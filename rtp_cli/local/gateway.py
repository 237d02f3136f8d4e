"""The template's REST API served on 127.0.0.1, behaving as API Gateway does for what the template says.

HTTP/1.1 itself (framing, keep-alive, capacity) is `rtp_cli.local.http11`: its refusals (malformed or
ambiguous framing 400, too large 413, more requests in flight than it handles 429) are rendered here like
every other gateway error. Chunked request bodies are decoded and reach the function without their
Transfer-Encoding header, as in API Gateway.

Per request, in API Gateway's order: payload limit (10 MB, REQUEST_TOO_LARGE 413) -> stage and route
from the template's Resources/Methods (unknown -> 403 Missing Authentication Token, as API Gateway
answers) -> stage throttling (token bucket per method from the stage's MethodSettings, 429 THROTTLED)
-> `AWS_IAM` SigV4 verification against the local credentials (403) -> request validation with the
method's RequestValidator: required parameters (400 BAD_REQUEST_PARAMETERS) and the body against the
RequestModels schema (400 BAD_REQUEST_BODY) -> REST proxy event to the Lambda function of the
integration -> the function's proxy response (or 502 on a function error or malformed response).
Every error is rendered through the template's GatewayResponses (status code, response template with
`$context` variables, header parameters), falling back to DEFAULT_4XX/DEFAULT_5XX and then to API
Gateway's built-in `{"message": ...}`. One JSON access-log line per request goes to the stage's access
log group with the stage's own format.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from jsonschema import Draft4Validator  # type: ignore[import-untyped]

from rtp_cli.local.functions import FunctionRuntime, Invocation
from rtp_cli.local.http11 import Http11Server, Request, Response
from rtp_cli.local.logs import LogShipper
from rtp_cli.local.schemacheck import Check, compile_schema
from rtp_cli.local.sigv4 import AuthFailure, verify
from rtp_cli.local.template import ACCOUNT_ID, Template, TemplateError

API_GATEWAY_MAX_PAYLOAD = 10 * 1024 * 1024
ADMIN_PREFIX = "/_rtp/"
INTEGRATION_TIMEOUT_SECONDS = 29

_DEFAULT_MESSAGES = {
    "MISSING_AUTHENTICATION_TOKEN": (403, "Missing Authentication Token"),
    "THROTTLED": (429, "Too Many Requests"),
    "REQUEST_TOO_LARGE": (413, "Request Too Long"),
    "BAD_REQUEST_BODY": (400, "Invalid request body"),
    "BAD_REQUEST_PARAMETERS": (400, "Missing required request parameters"),
    "INTEGRATION_FAILURE": (502, "Internal server error"),
    "INTEGRATION_TIMEOUT": (504, "Endpoint request timed out"),
}


# The server's own refusals -> (gateway response type, x-amzn-ErrorType); others render DEFAULT_4XX/5XX.
_REFUSALS = {
    413: ("REQUEST_TOO_LARGE", ""),
    429: ("THROTTLED", "ThrottlingException"),
}
# API Gateway drops Transfer-Encoding before the integration: the function gets the decoded body
# ("important notes for REST APIs", header table: Transfer-Encoding is not passed to the integration;
# https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-known-issues.html).
_DROPPED_REQUEST_HEADERS = frozenset({"transfer-encoding"})


@dataclass
class MethodSpec:
    resource_path: str
    http_method: str
    authorization: str
    function: str  # logical id of the integration's function
    models: dict[str, dict[str, Any]]  # content type -> JSON schema
    required_params: list[str]  # e.g. method.request.header.Content-Type
    validate_body: bool
    validate_params: bool


@dataclass
class TokenBucket:
    rate: float
    burst: int
    tokens: float = 0.0
    updated: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


@dataclass
class GatewayResponse:
    status: int | None
    templates: dict[str, str]
    headers: dict[str, str]


class ApiModel:
    """The REST API as the template defines it (one RestApi + one Stage)."""

    def __init__(self, template: Template) -> None:
        apis = template.of_type("AWS::ApiGateway::RestApi")
        if len(apis) != 1:
            raise TemplateError(
                f"the local runtime serves exactly one AWS::ApiGateway::RestApi (found {len(apis)})"
            )
        self.api_logical_id = next(iter(apis))
        self.api_id = template.refs[self.api_logical_id]
        stages = template.of_type("AWS::ApiGateway::Stage")
        if len(stages) != 1:
            raise TemplateError(
                f"the local runtime serves exactly one AWS::ApiGateway::Stage (found {len(stages)})"
            )
        stage_props = template.resolve(next(iter(stages.values()))["Properties"])
        self.stage = str(stage_props["StageName"])
        self.paths = self._paths(template)
        self.methods = self._methods(template)
        self.throttle = self._throttle(stage_props.get("MethodSettings", []))
        self.buckets = {key: TokenBucket(rate, burst) for key, (rate, burst) in self.throttle.items()}
        access = stage_props.get("AccessLogSetting") or {}
        self.access_log_group = _log_group_from_arn(access.get("DestinationArn", ""))
        self.access_log_format = str(access.get("Format", ""))
        self.gateway_responses = {
            str(p["ResponseType"]): GatewayResponse(
                int(p["StatusCode"]) if p.get("StatusCode") else None,
                dict(p.get("ResponseTemplates", {})),
                {
                    k.removeprefix("gatewayresponse.header."): str(v).strip("'")
                    for k, v in p.get("ResponseParameters", {}).items()
                },
            )
            for p in (
                template.resolve(r["Properties"])
                for r in template.of_type("AWS::ApiGateway::GatewayResponse").values()
            )
        }

    def _paths(self, template: Template) -> dict[str, str]:
        """Resource logical id (and the root id) -> full path."""
        resources = template.of_type("AWS::ApiGateway::Resource")
        root = template.attrs[(self.api_logical_id, "RootResourceId")]
        paths: dict[str, str] = {root: "/"}
        pending = dict(resources)
        while pending:
            progressed = False
            for lid in list(pending):
                props = template.props(lid)
                parent = template.resolve(props["ParentId"])
                if parent in paths:
                    paths[lid] = paths[parent].rstrip("/") + "/" + str(props["PathPart"])
                    del pending[lid]
                    progressed = True
            if not progressed:
                raise TemplateError(f"API resources {sorted(pending)} have no path to the root resource")
        return paths

    def _methods(self, template: Template) -> dict[tuple[str, str], MethodSpec]:
        validators = {
            lid: template.props(lid) for lid in template.of_type("AWS::ApiGateway::RequestValidator")
        }
        models = {lid: template.props(lid) for lid in template.of_type("AWS::ApiGateway::Model")}
        methods: dict[tuple[str, str], MethodSpec] = {}
        for lid in template.of_type("AWS::ApiGateway::Method"):
            props = template.props(lid)
            resource_id = template.resolve(props["ResourceId"])
            path = self.paths.get(resource_id)
            if path is None:
                raise TemplateError(f"{lid}: resource {resource_id} is not part of the API")
            functions = template.lambda_refs_in(props.get("Integration", {}).get("Uri"))
            if len(functions) != 1:
                raise TemplateError(f"{lid}: integration URI does not name one function of this template")
            validator_id = template.referenced_logical_id(props.get("RequestValidatorId"))
            validator = validators.get(validator_id or "", {})
            request_models: dict[str, dict[str, Any]] = {}
            for content_type, model_ref in (props.get("RequestModels") or {}).items():
                model_id = template.referenced_logical_id(model_ref)
                if model_id is None or model_id not in models:
                    raise TemplateError(f"{lid}: request model for {content_type} is not in the template")
                schema = models[model_id]["Schema"]
                Draft4Validator.check_schema(schema)
                request_models[content_type.lower()] = schema
            http_method = str(props["HttpMethod"]).upper()
            methods[(path, http_method)] = MethodSpec(
                resource_path=path,
                http_method=http_method,
                authorization=str(props.get("AuthorizationType", "NONE")),
                function=functions[0],
                models=request_models,
                required_params=[
                    k for k, required in (props.get("RequestParameters") or {}).items() if required
                ],
                validate_body=bool(validator.get("ValidateRequestBody")),
                validate_params=bool(validator.get("ValidateRequestParameters")),
            )
        return methods

    @staticmethod
    def _throttle(settings: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[float, int]]:
        out: dict[tuple[str, str], tuple[float, int]] = {}
        for setting in settings:
            if "ThrottlingRateLimit" not in setting and "ThrottlingBurstLimit" not in setting:
                continue
            raw_path = str(setting.get("ResourcePath", "/*"))
            path = raw_path if raw_path in ("/*", "/") else "/" + raw_path.lstrip("/").replace("~1", "/")
            key = (path, str(setting.get("HttpMethod", "*")).upper())
            out[key] = (
                float(setting.get("ThrottlingRateLimit", 10000)),
                int(setting.get("ThrottlingBurstLimit", 5000)),
            )
        return out

    def bucket_for(self, method: MethodSpec) -> TokenBucket | None:
        """Each method gets its own bucket: the specific setting if any, else the stage default (/*, *)."""
        key = (method.resource_path, method.http_method)
        if key in self.buckets:
            return self.buckets[key]
        default = self.throttle.get(("/*", "*"))
        if default is None:
            return None
        return self.buckets.setdefault(key, TokenBucket(*default))

    def route(self, path: str, http_method: str) -> tuple[MethodSpec, dict[str, str]] | None:
        segments = [unquote(s) for s in path.strip("/").split("/")] if path.strip("/") else []
        for (resource_path, method), spec in self.methods.items():
            if method not in (http_method, "ANY"):
                continue
            params = _match(resource_path, segments)
            if params is not None:
                return spec, params
        return None


def _match(resource_path: str, segments: list[str]) -> dict[str, str] | None:
    parts = [p for p in resource_path.strip("/").split("/") if p]
    params: dict[str, str] = {}
    for index, part in enumerate(parts):
        if part.startswith("{") and part.endswith("+}"):
            if index >= len(segments):
                return None
            params[part[1:-2]] = "/".join(segments[index:])
            return params
        if index >= len(segments):
            return None
        if part.startswith("{") and part.endswith("}"):
            if not segments[index]:
                return None
            params[part[1:-1]] = segments[index]
        elif part != segments[index]:
            return None
    return params if len(parts) == len(segments) else None


def _log_group_from_arn(arn: str) -> str:
    match = re.match(r"arn:[^:]+:logs:[^:]*:[^:]*:log-group:([^:]+)", arn)
    return match.group(1) if match else ""


@dataclass
class RequestState:
    request_id: str
    extended_id: str
    started: float
    time: datetime
    source_ip: str
    method: str
    path: str
    resource_path: str = ""
    status: int = 0
    response_length: int = 0
    integration_latency: str = "-"
    error_message: str = ""
    validation_error: str = ""
    caller: str = ""


class LocalApi:
    """The HTTP front end (`rtp_cli.local.http11`): `start()` serves in threads, `stop()` ends it."""

    def __init__(
        self,
        template: Template,
        functions: FunctionRuntime,
        shipper: LogShipper,
        *,
        access_key: str,
        secret_key: str,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.model = ApiModel(template)
        self.functions = functions
        self.shipper = shipper
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = template.region
        self.access_stream = f"{self.model.api_id}-{secrets.token_hex(8)}"
        self.admin: Callable[[str, bytes], Any] | None = None
        self.server = Http11Server(host, port, self.respond, self.refuse, max_body=API_GATEWAY_MAX_PAYLOAD)
        self.port = self.server.port
        self.url = f"http://{host}:{self.port}/{self.model.stage}/"

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    # ---- request handling ---------------------------------------------------------------------
    def _new_state(self, request: Request | None) -> RequestState:
        return RequestState(
            request_id=str(uuid.uuid4()),
            extended_id=base64.b32encode(secrets.token_bytes(10)).decode()[:16],
            started=time.monotonic(),
            time=datetime.now(UTC),
            source_ip=request.client[0] if request else "-",
            method=request.method if request else "-",
            path=request.target if request else "-",
        )

    def respond(self, request: Request) -> Response:
        """One complete request -> the answer API Gateway would give (and its access-log line)."""
        state = self._new_state(request)
        try:
            status, headers, body = self._process(request, state)
        except Exception as error:  # a bug in the runtime: answer like API Gateway's 500
            state.error_message = f"local runtime error: {error}"
            status, headers, body = self._gateway_error("DEFAULT_5XX", 500, "Internal server error", state)
        return self._finish(state, status, headers, body)

    def refuse(self, status: int, message: str, request: Request | None) -> Response:
        """The server's own refusals (framing, limits, capacity), in the template's JSON error shape."""
        state = self._new_state(request)
        response_type, error_type = _REFUSALS.get(status, ("", ""))
        # 501 is the answer to a transfer coding the client chose: its error, not the runtime's.
        family = "DEFAULT_4XX" if status < 500 or status == 501 else "DEFAULT_5XX"
        status, headers, body = self._gateway_error(
            response_type or family, status, message, state, error_type=error_type
        )
        if status == 429:
            headers["Retry-After"] = "1"
        return self._finish(state, status, headers, body, close=status != 429)

    def _finish(
        self, state: RequestState, status: int, headers: dict[str, str], body: bytes, close: bool = False
    ) -> Response:
        state.status = status
        state.response_length = len(body)
        headers.setdefault("x-amzn-RequestId", state.request_id)
        headers.setdefault("x-amz-apigw-id", state.extended_id)
        self._access_log(state)
        return Response(status, list(headers.items()), body, close=close)

    def _process(self, request: Request, state: RequestState) -> tuple[int, dict[str, str], bytes]:
        body = request.body
        split = urlsplit(request.target)
        if split.path.startswith(ADMIN_PREFIX) and self.admin is not None:
            return self._admin(request, split.path.removeprefix(ADMIN_PREFIX))
        stage, _, rest = split.path.lstrip("/").partition("/")
        if stage != self.model.stage:
            return self._gateway_error(
                "MISSING_AUTHENTICATION_TOKEN",
                403,
                "Missing Authentication Token",
                state,
                error_type="MissingAuthenticationTokenException",
            )
        routed = self.model.route("/" + rest, request.method)
        if routed is None:
            return self._gateway_error(
                "MISSING_AUTHENTICATION_TOKEN",
                403,
                "Missing Authentication Token",
                state,
                error_type="MissingAuthenticationTokenException",
            )
        method, path_params = routed
        state.resource_path = method.resource_path
        bucket = self.model.bucket_for(method)
        if bucket is not None and not bucket.take():
            return self._gateway_error(
                "THROTTLED", 429, "Too Many Requests", state, error_type="ThrottlingException"
            )
        if method.authorization == "AWS_IAM":
            host = request.headers.get("Host", f"127.0.0.1:{self.port}")
            outcome = verify(
                request.method,
                f"http://{host}{request.target}",
                request.headers.items(),
                body,
                access_key=self.access_key,
                secret_key=self.secret_key,
                region=self.region,
            )
            if isinstance(outcome, AuthFailure):
                status = _DEFAULT_MESSAGES.get(outcome.response_type, (403, ""))[0]
                return self._gateway_error(
                    outcome.response_type, status, outcome.message, state, error_type=outcome.error_type
                )
            state.caller = outcome.access_key
        query = parse_qsl(split.query, keep_blank_values=True)
        problem = self._validate(method, request, path_params, query, state)
        if problem is not None:
            return problem
        event = self._event(request, method, path_params, query, state)
        started = time.monotonic()
        invocation = self.functions.invoke(method.function, event)
        state.integration_latency = str(round((time.monotonic() - started) * 1000))
        return self._proxy_response(invocation, state)

    def _admin(self, request: Request, name: str) -> tuple[int, dict[str, str], bytes]:
        """Runtime introspection for `rtp status` (signed like the API; not part of the template's API)."""
        host = request.headers.get("Host", f"127.0.0.1:{self.port}")
        outcome = verify(
            request.method,
            f"http://{host}{request.target}",
            request.headers.items(),
            request.body,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
        )
        if isinstance(outcome, AuthFailure):
            return (
                403,
                {"Content-Type": "application/json"},
                json.dumps({"message": outcome.message}).encode(),
            )
        assert self.admin is not None
        payload = self.admin(name, request.body)
        if payload is None:
            return 404, {"Content-Type": "application/json"}, json.dumps({"message": "not found"}).encode()
        return 200, {"Content-Type": "application/json"}, json.dumps(payload, default=str).encode()

    def _validate(
        self,
        method: MethodSpec,
        request: Request,
        path_params: dict[str, str],
        query: list[tuple[str, str]],
        state: RequestState,
    ) -> tuple[int, dict[str, str], bytes] | None:
        if method.validate_params:
            missing = []
            query_names = {k for k, _ in query}
            for param in method.required_params:
                _, _, kind, name = param.split(".", 3)
                present = (
                    (kind == "header" and request.headers.get(name) is not None)
                    or (kind == "querystring" and name in query_names)
                    or (kind == "path" and bool(path_params.get(name)))
                )
                if not present:
                    missing.append(name)
            if missing:
                message = f"Missing required request parameters: [{', '.join(missing)}]"
                state.validation_error = message
                return self._gateway_error(
                    "BAD_REQUEST_PARAMETERS", 400, message, state, error_type="BadRequestException"
                )
        if method.validate_body and method.models:
            content_type = (
                (request.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
            )
            schema = method.models.get(content_type) or method.models.get("$default")
            if schema is not None:
                errors = _schema_errors(schema, request.body)
                if errors:
                    state.validation_error = "[" + ", ".join(errors) + "]"
                    return self._gateway_error(
                        "BAD_REQUEST_BODY",
                        400,
                        "Invalid request body",
                        state,
                        error_type="BadRequestException",
                    )
        return None

    def _event(
        self,
        request: Request,
        method: MethodSpec,
        path_params: dict[str, str],
        query: list[tuple[str, str]],
        state: RequestState,
    ) -> dict[str, Any]:
        headers = [(n, v) for n, v in request.headers.items() if n.lower() not in _DROPPED_REQUEST_HEADERS]
        return proxy_event(
            request.method,
            "/" + urlsplit(request.target).path.lstrip("/").partition("/")[2],
            resource=method.resource_path,
            stage=self.model.stage,
            api_id=self.model.api_id,
            path_parameters=path_params,
            query=query,
            headers=headers,
            body=request.body.decode("utf-8", "replace") if request.body else None,
            request_id=state.request_id,
            extended_id=state.extended_id,
            request_time=state.time,
            caller=state.caller,
            source_ip=state.source_ip,
            protocol=f"HTTP/{request.http_version}",
        )

    def _proxy_response(
        self, invocation: Invocation, state: RequestState
    ) -> tuple[int, dict[str, str], bytes]:
        if not invocation.ok:
            state.error_message = f"{invocation.error_type}: {invocation.error_message}"
            return self._gateway_error("DEFAULT_5XX", 502, "Internal server error", state)
        result = invocation.result
        if not isinstance(result, dict) or not isinstance(result.get("statusCode", 200), int):
            state.error_message = "Malformed Lambda proxy response"
            return self._gateway_error("DEFAULT_5XX", 502, "Internal server error", state)
        headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            if values:
                headers[str(name)] = ", ".join(str(v) for v in values)
        raw = result.get("body") or ""
        body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode("utf-8")
        headers.setdefault("Content-Type", "application/json")
        return int(result.get("statusCode", 200)), headers, body

    def _gateway_error(
        self,
        response_type: str,
        status: int,
        message: str,
        state: RequestState,
        error_type: str = "",
    ) -> tuple[int, dict[str, str], bytes]:
        """Render a gateway response as the template defines it (specific type, then DEFAULT_4XX/5XX)."""
        state.error_message = state.error_message or message
        family = "DEFAULT_4XX" if status < 500 else "DEFAULT_5XX"
        response = self.model.gateway_responses.get(response_type) or self.model.gateway_responses.get(family)
        headers = {"Content-Type": "application/json"}
        if error_type:
            headers["x-amzn-ErrorType"] = error_type
        if response is None:
            return status, headers, json.dumps({"message": message}).encode()
        final_status = response.status or status
        template = response.templates.get("application/json")
        if template is None:
            body = json.dumps({"message": message}).encode()
        else:
            body = self._render(template, state, message).encode("utf-8")
        headers.update(response.headers)
        return final_status, headers, body

    def _context(self, state: RequestState, message: str = "") -> dict[str, str]:
        return {
            "requestId": state.request_id,
            "extendedRequestId": state.extended_id,
            "identity.sourceIp": state.source_ip,
            "identity.caller": state.caller or "-",
            "identity.userArn": f"arn:aws:iam::{ACCOUNT_ID}:user/local-developer" if state.caller else "-",
            "requestTime": state.time.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "httpMethod": state.method,
            "resourcePath": state.resource_path or "-",
            "status": str(state.status),
            "protocol": "HTTP/1.1",
            "responseLength": str(state.response_length),
            "responseLatency": str(round((time.monotonic() - state.started) * 1000)),
            "integrationLatency": state.integration_latency,
            "error.message": message or state.error_message or "-",
            "error.messageString": json.dumps(message or state.error_message),
            "error.validationErrorString": state.validation_error or "-",
            "xrayTraceId": "-",
            "waf.status": "-",
            "stage": self.model.stage,
            "apiId": self.model.api_id,
        }

    def _render(self, text: str, state: RequestState, message: str = "") -> str:
        context = self._context(state, message)
        if not message:
            context["error.messageString"] = json.dumps(state.error_message or "")

        def substitute(match: re.Match[str]) -> str:
            return context.get(match.group(1), "")

        return re.sub(r"\$context\.([A-Za-z0-9_.]*[A-Za-z0-9_])", substitute, text)

    def _access_log(self, state: RequestState) -> None:
        if not self.model.access_log_group or not self.model.access_log_format:
            return
        with contextlib.suppress(Exception):
            line = self._render(self.model.access_log_format, state)
            self.shipper.emit(self.model.access_log_group, self.access_stream, line, "api")


# id(schema) -> (the schema, kept so the id stays its own; its compiled check or None)
_FAST_CHECKS: dict[int, tuple[dict[str, Any], Check | None]] = {}


def _accepted_fast(schema: dict[str, Any], document: Any) -> bool:
    """True only for a document jsonschema would accept (rtp_cli/local/schemacheck.py)."""
    entry = _FAST_CHECKS.get(id(schema))
    if entry is None or entry[0] is not schema:
        entry = _FAST_CHECKS[id(schema)] = (schema, compile_schema(schema))
    check = entry[1]
    return check is not None and check(document)


def _schema_errors(schema: dict[str, Any], body: bytes) -> list[str]:
    try:
        document = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return [f"Invalid JSON: {error}"]
    if _accepted_fast(schema, document):
        return []
    validator = Draft4Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    messages = []
    for problem in errors[:10]:
        if problem.validator == "oneOf":
            matched = sum(1 for sub in schema.get("oneOf", []) if Draft4Validator(sub).is_valid(document))
            total = len(schema.get("oneOf", []))
            messages.append(f"instance failed to match exactly one schema (matched {matched} out of {total})")
        else:
            location = "/" + "/".join(str(p) for p in problem.absolute_path)
            messages.append(f"{location}: {problem.message}")
    return messages


def proxy_event(
    http_method: str,
    path: str,
    *,
    resource: str | None = None,
    stage: str = "v1",
    api_id: str = "local",
    path_parameters: dict[str, str] | None = None,
    query: list[tuple[str, str]] | None = None,
    headers: list[tuple[str, str]] | dict[str, str] | None = None,
    body: str | bytes | None = None,
    request_id: str | None = None,
    extended_id: str = "",
    request_time: datetime | None = None,
    caller: str = "",
    source_ip: str = "127.0.0.1",
    protocol: str = "HTTP/1.1",
) -> dict[str, Any]:
    """The REST API (v1) Lambda proxy event API Gateway sends the integration's function. `path` is the
    path below the stage, `resource` the template's resource path (`/records/{id}`); a `bytes` body is
    passed base64-encoded, as API Gateway does for a binary media type."""
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    single: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi_headers.setdefault(name, []).append(value)
    multi_query: dict[str, list[str]] = {}
    for name, value in query or []:
        multi_query.setdefault(name, []).append(value)
    resource = resource or path
    when = request_time or datetime.now(UTC)
    lowered = {name.lower(): value for name, value in pairs}
    encoded = isinstance(body, bytes)
    identity_arn = f"arn:aws:iam::{ACCOUNT_ID}:user/local-developer" if caller else None
    return {
        "resource": resource,
        "path": path,
        "httpMethod": http_method,
        "headers": single or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": resource,
            "resourcePath": resource,
            "httpMethod": http_method,
            "extendedRequestId": extended_id,
            "requestTime": when.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{stage}{path}",
            "accountId": ACCOUNT_ID,
            "protocol": protocol,
            "stage": stage,
            "domainPrefix": "127",
            "requestTimeEpoch": int(when.timestamp() * 1000),
            "requestId": request_id or str(uuid.uuid4()),
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": ACCOUNT_ID if caller else None,
                "cognitoIdentityId": None,
                "caller": caller or None,
                "sourceIp": source_ip,
                "principalOrgId": None,
                "accessKey": caller or None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": identity_arn,
                "userAgent": lowered.get("user-agent"),
                "user": caller or None,
            },
            "domainName": lowered.get("host", "127.0.0.1"),
            "apiId": api_id,
        },
        "body": base64.b64encode(body).decode() if isinstance(body, bytes) else body,
        "isBase64Encoded": encoded,
    }
