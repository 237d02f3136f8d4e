"""`rtp invoke FUNCTION`: run one function with one event and show its response, log lines and duration.

- **local**: the event goes to the running local environment (`/_rtp/invoke`, signed like the API) and
  through the same `FunctionRuntime` the API and the event source mapping use: same worker processes,
  same environment variables, same concurrency, the same code `--watch` has just reloaded.
- **AWS**: `lambda:Invoke` on the deployed function (name from the stack outputs) with
  `InvocationType=RequestResponse` and `LogType=Tail`, which returns the last 4 KB of the invocation's
  log, base64-encoded, in `LogResult`; a function error comes back as the `FunctionError` field with the
  error in the payload, not as an API error. A synchronous invocation's request payload is at most 6 MB.
  (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html). Invoking is not idempotent, so the
  SDK is told not to retry it.

`--generate api|sqs` builds a realistic event from the environment's template: the API Gateway REST proxy
event of the route that integrates the function (signed-looking headers; for ingest a body valid against
the route's request model), or an SQS batch whose message is a claim check (the processor's real input)
pointing at a real raw object of that environment.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from rtp_cli.target import Target, TargetError

FUNCTIONS = ("ingest", "processor", "query")
OUTPUT_KEYS = {
    "ingest": "IngestFunctionName",
    "processor": "ProcessorFunctionName",
    "query": "QueryFunctionName",
}
# Lambda Invoke: "For synchronous invocations, the maximum payload size is 6 MB."
# https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html
SYNC_PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024
# Lambda's longest function timeout is 900 s; the SDK must wait at least that long for a synchronous answer.
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html
INVOKE_READ_TIMEOUT_SECONDS = 910
LOCAL_ACCOUNT_ID = "123456789012"  # the local emulation's account (rtp_cli.local.template.ACCOUNT_ID)
RAW_PREFIX = "raw/"  # stack/data.py RAW_PREFIX: raw/YYYY/MM/DD/HH/<batchId>.json
RAW_LOOKBACK_HOURS = 72
_DURATION = re.compile(r"\tDuration: ([0-9.]+) ms")
_INIT = re.compile(r"Init Duration: ([0-9.]+) ms")


class InvokeError(RuntimeError):
    """The invocation could not be made as asked (usage, missing event, unknown function). Exit code 2."""


@dataclass
class InvokeResult:
    function: str  # ingest | processor | query
    function_name: str
    env: str
    request_id: str
    ok: bool
    payload: Any
    error_type: str = ""
    error_message: str = ""
    logs: list[str] = field(default_factory=list)
    duration_ms: float | None = None  # the function's own duration (REPORT line)
    init_ms: float | None = None  # set on a cold start
    round_trip_ms: float = 0.0
    logs_truncated: bool = False  # AWS returns only the last 4 KB of the log

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "functionName": self.function_name,
            "env": self.env,
            "requestId": self.request_id,
            "ok": self.ok,
            "response": self.payload,
            "errorType": self.error_type,
            "errorMessage": self.error_message,
            "durationMs": self.duration_ms,
            "initMs": self.init_ms,
            "coldStart": self.init_ms is not None,
            "roundTripMs": round(self.round_trip_ms, 2),
            "logs": self.logs,
            "logsTruncated": self.logs_truncated,
        }


def check_function(function: str) -> None:
    if function not in FUNCTIONS:
        raise InvokeError(f"unknown function {function!r}: choose from {', '.join(FUNCTIONS)}")


def function_name(target: Target, function: str) -> str:
    check_function(function)
    return target.output(OUTPUT_KEYS[function])


def read_event(source: str, stdin: IO[str] | None = None) -> Any:
    """`--event FILE` or `--event -` (stdin): one JSON document."""
    if source == "-":
        text = (stdin or sys.stdin).read()
        where = "standard input"
    else:
        path = Path(source)
        if not path.is_file():
            raise InvokeError(f"--event {source}: no such file")
        text = path.read_text(encoding="utf-8")
        where = source
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvokeError(f"the event in {where} is not JSON: {error}") from error


def encode_event(event: Any) -> bytes:
    payload = json.dumps(event, separators=(",", ":")).encode("utf-8")
    if len(payload) > SYNC_PAYLOAD_LIMIT_BYTES:
        raise InvokeError(
            f"the event is {len(payload)} bytes; a synchronous Lambda invocation takes at most "
            f"{SYNC_PAYLOAD_LIMIT_BYTES} bytes (6 MB)"
        )
    return payload


# ---- invoking -----------------------------------------------------------------------------------------
def invoke(target: Target, function: str, event: Any, lambda_client: Any = None) -> InvokeResult:
    payload = encode_event(event)
    name = function_name(target, function)
    if target.is_local:
        return _invoke_local(target, function, name, payload)
    return _invoke_aws(target, function, name, payload, lambda_client or make_lambda_client(target))


def _local_admin(target: Target, path: str, body: bytes | None, timeout: float) -> Any:
    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    base = urlsplit(target.api_url)
    url = f"{base.scheme}://{base.netloc}/_rtp/{path}"
    method = "POST" if body is not None else "GET"
    request = AWSRequest(
        method=method, url=url, data=body or b"", headers={"Content-Type": "application/json"}
    )
    SigV4Auth(target.credentials(), "execute-api", target.region).add_auth(request)
    try:
        response = requests.request(method, url, data=body, headers=dict(request.headers), timeout=timeout)
    except requests.RequestException as error:
        raise TargetError(f"cannot reach the local environment at {target.api_url}: {error}") from error
    if response.status_code == 404:
        raise TargetError(
            "the running local environment predates `rtp invoke`: restart it (rtp deploy --env local)"
        )
    if not response.ok:
        raise TargetError(f"the local environment answered {response.status_code}: {response.text[:300]}")
    return response.json()


def _invoke_local(target: Target, function: str, name: str, payload: bytes) -> InvokeResult:
    body = json.dumps({"function": name, "event": json.loads(payload)}).encode("utf-8")
    started = time.monotonic()
    answer = _local_admin(target, "invoke", body, timeout=INVOKE_READ_TIMEOUT_SECONDS)
    round_trip = (time.monotonic() - started) * 1000
    if answer.get("error"):
        raise TargetError(f"local invoke of {function}: {answer['error']}")
    return InvokeResult(
        function=function,
        function_name=name,
        env=target.env,
        request_id=str(answer.get("requestId", "")),
        ok=bool(answer.get("ok")),
        payload=answer.get("result")
        if answer.get("ok")
        else {"errorType": answer.get("errorType"), "errorMessage": answer.get("errorMessage")},
        error_type=str(answer.get("errorType") or ""),
        error_message=str(answer.get("errorMessage") or ""),
        logs=list(answer.get("logs") or []),
        duration_ms=answer.get("durationMs"),
        init_ms=answer.get("initMs") if answer.get("coldStart") else None,
        round_trip_ms=round_trip,
    )


def make_lambda_client(target: Target) -> Any:
    from botocore.config import Config

    # No automatic retry: a retried invocation would run the function twice. (botocore's `max_attempts`
    # counts retries; `total_max_attempts` counts the first call too: 1 = no retry.
    # https://botocore.amazonaws.com/v1/documentation/api/latest/reference/config.html)
    config = Config(
        read_timeout=INVOKE_READ_TIMEOUT_SECONDS, retries={"mode": "standard", "total_max_attempts": 1}
    )
    return target.client("lambda", config=config)


def _invoke_aws(target: Target, function: str, name: str, payload: bytes, client: Any) -> InvokeResult:
    from botocore.exceptions import BotoCoreError, ClientError

    started = time.monotonic()
    try:
        response = client.invoke(
            FunctionName=name, InvocationType="RequestResponse", LogType="Tail", Payload=payload
        )
    except ClientError as failure:
        message = failure.response.get("Error", {}).get("Message", str(failure))
        raise TargetError(f"lambda:Invoke {name}: {message}") from failure
    except BotoCoreError as failure:
        raise TargetError(f"lambda:Invoke {name}: {failure}") from failure
    round_trip = (time.monotonic() - started) * 1000
    raw = response["Payload"].read()
    try:
        result: Any = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        result = raw.decode("utf-8", "replace")
    log_text = base64.b64decode(response.get("LogResult") or "").decode("utf-8", "replace")
    logs = [line for line in log_text.splitlines() if line.strip()]
    report = next((line for line in reversed(logs) if line.startswith("REPORT")), "")
    duration = _DURATION.search(report)
    init = _INIT.search(report)
    failed = bool(response.get("FunctionError"))
    error = result if failed and isinstance(result, dict) else {}
    return InvokeResult(
        function=function,
        function_name=name,
        env=target.env,
        request_id=str(response.get("ResponseMetadata", {}).get("RequestId", "")),
        ok=not failed,
        payload=result,
        error_type=str(error.get("errorType") or (response.get("FunctionError") or "")),
        error_message=str(error.get("errorMessage") or ""),
        logs=logs,
        duration_ms=float(duration.group(1)) if duration else None,
        init_ms=float(init.group(1)) if init else None,
        round_trip_ms=round_trip,
        logs_truncated=len(log_text.encode("utf-8")) >= 4096,  # LogResult holds the last 4 KB
    )


# ---- events from the template -------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    http_method: str
    resource_path: str  # /records/{id}
    model: dict[str, Any] | None  # the JSON request model, if the method validates bodies

    def __str__(self) -> str:
        return f"{self.http_method} {self.resource_path}"


def template_document(target: Target) -> dict[str, Any]:
    """The template the environment runs: local: the one it serves; AWS: the deployed one."""
    if target.is_local:
        path = Path(str(target.extra.get("template", "")))
        if not path.is_file():
            raise TargetError(f"the local environment's template {path} is gone: restart it")
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return document
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        body = target.client("cloudformation").get_template(StackName=target.stack_name)["TemplateBody"]
    except (ClientError, BotoCoreError) as error:
        raise TargetError(f"cannot read the template of {target.stack_name}: {error}") from error
    return json.loads(body) if isinstance(body, str) else dict(body)


def _ref(value: Any) -> str | None:
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            return str(att[0] if isinstance(att, list) else str(att).split(".")[0])
    return None


def _refs_in(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        ref = _ref(value)
        if ref:
            found.add(ref)
        for item in value.values():
            found |= _refs_in(item)
    elif isinstance(value, list):
        for item in value:
            found |= _refs_in(item)
    return found


def function_logical_id(document: dict[str, Any], function: str) -> str:
    output = document.get("Outputs", {}).get(OUTPUT_KEYS[function], {})
    logical_id = _ref(output.get("Value"))
    if not logical_id or logical_id not in document.get("Resources", {}):
        raise InvokeError(
            f"the template has no output {OUTPUT_KEYS[function]} naming the {function} function"
        )
    return logical_id


def event_sources(document: dict[str, Any], logical_id: str) -> dict[str, Any]:
    """How the function is triggered: {"api": [Route...], "sqs": [queue logical ids]}."""
    resources: dict[str, Any] = document.get("Resources", {})
    paths: dict[str, str] = {}
    pending = {lid: r for lid, r in resources.items() if r.get("Type") == "AWS::ApiGateway::Resource"}
    while pending:
        progressed = False
        for lid, resource in list(pending.items()):
            props = resource.get("Properties", {})
            parent = props.get("ParentId")
            prefix = (
                "" if isinstance(parent, dict) and "Fn::GetAtt" in parent else paths.get(_ref(parent) or "")
            )
            if prefix is None:
                continue
            paths[lid] = prefix + "/" + str(props.get("PathPart"))
            del pending[lid]
            progressed = True
        if not progressed:
            break
    routes = []
    for resource in resources.values():
        if resource.get("Type") != "AWS::ApiGateway::Method":
            continue
        props = resource.get("Properties", {})
        if logical_id not in _refs_in(props.get("Integration", {}).get("Uri")):
            continue
        resource_id = _ref(props.get("ResourceId"))
        path = paths.get(resource_id or "", "/")
        model_id = _ref((props.get("RequestModels") or {}).get("application/json"))
        model = resources.get(model_id or "", {}).get("Properties", {}).get("Schema")
        routes.append(Route(str(props.get("HttpMethod", "GET")).upper(), path, model))
    queues = [
        _ref(r.get("Properties", {}).get("EventSourceArn"))
        for r in resources.values()
        if r.get("Type") == "AWS::Lambda::EventSourceMapping"
        and _ref(r.get("Properties", {}).get("FunctionName")) == logical_id
    ]
    # Template order (the stack defines the primary route first), writes before reads.
    return {"api": sorted(routes, key=lambda r: r.http_method != "POST"), "sqs": queues}


def stage_name(document: dict[str, Any]) -> str:
    for resource in document.get("Resources", {}).values():
        if resource.get("Type") == "AWS::ApiGateway::Stage":
            return str(resource.get("Properties", {}).get("StageName", "v1"))
    return "v1"


@dataclass
class Caller:
    account_id: str
    arn: str
    access_key: str
    secret_key: str  # local: the local secret (the signature verifies); AWS: random (it only looks signed)


def caller(target: Target) -> Caller:
    if target.is_local:
        return Caller(
            LOCAL_ACCOUNT_ID,
            f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:user/local-developer",
            str(target.extra.get("access_key_id", "")),
            str(target.extra.get("secret_access_key", "")),
        )
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        identity = target.client("sts").get_caller_identity()
    except (ClientError, BotoCoreError) as error:
        raise TargetError(f"cannot identify the AWS caller: {error}") from error
    # Never put a usable signature (or a session token) in an event that may be printed or saved.
    return Caller(
        str(identity["Account"]),
        str(identity["Arn"]),
        str(target.credentials().access_key),
        secrets.token_hex(20),
    )


def sample_records(count: int = 1) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [
        {
            "id": f"invoke-{uuid.uuid4().hex[:12]}-{index}",
            "type": "example.reading",
            "source": "rtp-invoke",
            "timestamp": now,
            "data": {"sensor": "s-1", "value": 21.5 + index, "unit": "C"},
        }
        for index in range(count)
    ]


def api_event(
    document: dict[str, Any],
    route: Route,
    api_url: str,
    api_id: str,
    region: str,
    who: Caller,
    path_values: dict[str, str] | None = None,
    body: Any = None,
) -> dict[str, Any]:
    """The REST API proxy event API Gateway sends for this route (AWS_IAM-signed request)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import ReadOnlyCredentials

    stage = stage_name(document)
    values = dict(path_values or {})
    names = re.findall(r"{([^}+]+)\+?}", route.resource_path)
    path = route.resource_path
    for name in names:
        path = path.replace("{" + name + "}", values.setdefault(name, "example-id"))
    raw_body = json.dumps(body, separators=(",", ":")) if body is not None else None
    if body is not None and route.model is not None:
        from jsonschema import Draft4Validator  # type: ignore[import-untyped]

        problems = [e.message for e in Draft4Validator(route.model).iter_errors(body)]
        if problems:
            raise InvokeError(f"the generated body does not match the {route} request model: {problems[0]}")
    url = urlsplit(api_url)
    host = url.netloc
    now = datetime.now(UTC)
    headers = {"Host": host, "Accept": "application/json", "User-Agent": "rtp-invoke"}
    if raw_body is not None:
        headers["Content-Type"] = "application/json"
    request = AWSRequest(
        method=route.http_method,
        url=f"{url.scheme}://{host}/{stage}{path}",
        data=(raw_body or "").encode("utf-8"),
        headers=headers,
    )
    SigV4Auth(ReadOnlyCredentials(who.access_key, who.secret_key, None), "execute-api", region).add_auth(
        request
    )
    signed = dict(request.headers.items())
    signed.update(
        {
            "X-Forwarded-For": "127.0.0.1",
            "X-Forwarded-Port": str(url.port or 443),
            "X-Forwarded-Proto": url.scheme,
            "X-Amzn-Trace-Id": f"Root=1-{int(now.timestamp()):08x}-{secrets.token_hex(12)}",
        }
    )
    request_id = str(uuid.uuid4())
    return {
        "resource": route.resource_path,
        "path": path,
        "httpMethod": route.http_method,
        "headers": signed,
        "multiValueHeaders": {name: [value] for name, value in signed.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {name: values[name] for name in names} or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": route.resource_path,
            "resourcePath": route.resource_path,
            "httpMethod": route.http_method,
            "extendedRequestId": base64.b32encode(secrets.token_bytes(10)).decode()[:16],
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{stage}{path}",
            "accountId": who.account_id,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": host.split(".")[0],
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": who.account_id,
                "cognitoIdentityId": None,
                "caller": who.access_key,
                "sourceIp": "127.0.0.1",
                "principalOrgId": None,
                "accessKey": who.access_key,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": who.arn,
                "userAgent": "rtp-invoke",
                "user": who.access_key,
            },
            "domainName": host,
            "apiId": api_id,
        },
        "body": raw_body,
        "isBase64Encoded": False,
    }


def sqs_event(message_body: str, queue_url: str, region: str) -> dict[str, Any]:
    """An SQS event as Lambda's event source mapping delivers it (one message)."""
    import hashlib

    parts = urlsplit(queue_url).path.strip("/").split("/")
    account, name = (parts[0], parts[-1]) if len(parts) >= 2 else (LOCAL_ACCOUNT_ID, parts[-1])
    now_ms = str(int(time.time() * 1000))
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": base64.b64encode(secrets.token_bytes(48)).decode(),
                "body": message_body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now_ms,
                    "SenderId": "AIDAINVOKEEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": now_ms,
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(message_body.encode()).hexdigest(),  # noqa: S324 - SQS's checksum
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{region}:{account}:{name}",
                "awsRegion": region,
            }
        ]
    }


def _storage() -> Any:
    """The functions' storage module (claim-check format, table layout): one definition of both. The
    `rtp_pipeline` package is installed with rtp (pyproject.toml maps it from handlers/); imported on use
    because it loads boto3."""
    import rtp_pipeline.storage as storage

    return storage


def latest_batch(target: Target, now: datetime | None = None) -> dict[str, Any] | None:
    """The newest raw request of the environment (hour prefixes, newest first) and its batch item."""
    s3 = target.client("s3")
    bucket = target.output("RawBucketName")
    moment = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    for hours in range(RAW_LOOKBACK_HOURS):
        prefix = f"{RAW_PREFIX}{moment - timedelta(hours=hours):%Y/%m/%d/%H}/"
        newest: dict[str, Any] | None = None
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if newest is None or (item["LastModified"], item["Key"]) > (
                    newest["LastModified"],
                    newest["Key"],
                ):
                    newest = item
        if newest is None:
            continue
        batch_id = Path(str(newest["Key"])).stem
        storage = _storage()
        batch: dict[str, Any] | None = storage.PipelineTable(
            target.client("dynamodb"), target.output("TableName")
        ).get_batch(batch_id)
        if batch is not None:
            return {**batch, "bucket": bucket}
    return None


def claim_check(batch: dict[str, Any]) -> str:
    storage = _storage()
    claim = storage.ClaimCheck(
        batch_id=str(batch["batchId"]),
        bucket=str(batch["bucket"]),
        key=str(batch["rawKey"]),
        correlation_id=str(batch.get("correlationId", "")),
        received_at=str(batch["receivedAt"]),
        record_count=len(batch.get("ids") or []) or int(batch.get("accepted", 0)),
        by_record=batch.get("byRecord") is True,
    )
    text: str = claim.to_json()
    return text


@dataclass
class Generated:
    event: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def generate(target: Target, function: str, kind: str, route_text: str | None = None) -> Generated:
    """A realistic event for `function` from the environment's template (and its data)."""
    check_function(function)
    if kind not in ("api", "sqs"):
        raise InvokeError(f"--generate {kind}: choose api or sqs")
    document = template_document(target)
    logical_id = function_logical_id(document, function)
    sources = event_sources(document, logical_id)
    if not sources[kind]:
        other = "sqs" if kind == "api" else "api"
        hint = f": use --generate {other}" if sources[other] else ""
        trigger = {"api": "API Gateway", "sqs": "an SQS event source mapping"}[kind]
        raise InvokeError(f"{function} is not triggered by {trigger} in this template{hint}")
    notes: list[str] = []
    if kind == "sqs":
        batch = latest_batch(target)
        if batch is None:
            if not target.is_local:
                raise InvokeError(
                    f"no raw request in {target.output('RawBucketName')} (last {RAW_LOOKBACK_HOURS} h) for a "
                    f"claim check to point at: send one first (rtp send --env {target.env})"
                )
            batch = _seed_local_batch(target, document)
            notes.append(
                f"no raw request existed yet: ingested batch {batch['batchId']} through the ingest function "
                "(the event source mapping processes it too; processing is idempotent)"
            )
        notes.append(f"claim check for batch {batch['batchId']} ({batch['rawKey']})")
        return Generated(sqs_event(claim_check(batch), target.output("WorkQueueUrl"), target.region), notes)
    routes: list[Route] = sources["api"]
    route = routes[0]
    if route_text:
        wanted = " ".join(route_text.split()).upper()
        matches = [r for r in routes if f"{r.http_method} {r.resource_path}".upper() == wanted]
        if not matches:
            raise InvokeError(f"--route {route_text}: {function} serves {', '.join(str(r) for r in routes)}")
        route = matches[0]
    who = caller(target)
    body = {"records": sample_records(1)} if route.http_method in ("POST", "PUT", "PATCH") else None
    values: dict[str, str] = {}
    if body is None:
        batch = latest_batch(target)
        if batch is not None:
            values = {"id": str((batch.get("ids") or ["example-id"])[0]), "batchId": str(batch["batchId"])}
            notes.append(f"path values from the newest batch {batch['batchId']}")
        else:
            notes.append("no batch stored yet: the path names example-id (expect 404)")
    api_id = _api_id(target)
    event = api_event(document, route, target.api_url, api_id, target.region, who, values, body)
    notes.insert(0, f"{route} proxy event")
    return Generated(event, notes)


def _api_id(target: Target) -> str:
    if target.is_local:
        return str(target.extra.get("api_id") or "local")
    return urlsplit(target.api_url).netloc.split(".")[0]


def _seed_local_batch(target: Target, document: dict[str, Any]) -> dict[str, Any]:
    logical_id = function_logical_id(document, "ingest")
    route = next(r for r in event_sources(document, logical_id)["api"] if r.http_method == "POST")
    event = api_event(
        document,
        route,
        target.api_url,
        _api_id(target),
        target.region,
        caller(target),
        body={"records": sample_records(1)},
    )
    result = invoke(target, "ingest", event)
    response = result.payload if isinstance(result.payload, dict) else {}
    try:
        batch_id = json.loads(response.get("body") or "{}")["batchId"]
    except (ValueError, KeyError) as error:
        raise InvokeError(
            f"could not ingest a sample request to point a claim check at: {result.payload}"
        ) from error
    batch: dict[str, Any] | None = (
        _storage().PipelineTable(target.client("dynamodb"), target.output("TableName")).get_batch(batch_id)
    )
    if batch is None:
        raise InvokeError(f"ingested batch {batch_id} but its batch item is missing")
    return {**batch, "bucket": target.output("RawBucketName")}
