"""The handler test harness: the stack's data resources in moto, built from the synthesized template.

`deploy(template)` creates every KMS key, DynamoDB table, S3 bucket and SQS queue of the template in moto
with the template's own properties (keys, GSIs, TTL, encryption, visibility timeout, redrive policy), and
resolves each function's environment variables from the template (`Ref`/`Fn::GetAtt` to those resources),
so the handlers run against what the stack deploys, not against a hand-written copy of it.

`Pipeline` invokes the handlers in-process with API Gateway REST proxy events and SQS events, plays the
SQS event source mapping (receive, invoke, delete what succeeded, leave failures for redelivery), and
attributes every AWS API call to the function (or the event source mapping) that made it (`CallRecorder`).
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
ESM = "event source mapping"

# The functions' process environment in tests: fake credentials and region (moto answers everything,
# nothing can reach AWS); Powertools as in Lambda, minus X-Ray (no daemon here); Metrics needs its
# namespace at import.
LAMBDA_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "rtp-test",
}


# --- call recording -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiCall:
    actor: str  # function name ("ingest", ...) or "<function> [event source mapping]"
    service: str  # botocore service name, e.g. "dynamodb"
    operation: str  # API operation, e.g. "TransactWriteItems"
    params: dict[str, Any] = field(compare=False, hash=False)


class CallRecorder:
    """Records every API call made through a boto3 session while an actor is set."""

    def __init__(self) -> None:
        self.calls: list[ApiCall] = []
        self.actor: str | None = None

    def attach(self, session: boto3.Session) -> None:
        # provide-client-params fires once per API call (not per retry) with the caller's parameters.
        session.events.register("provide-client-params.*.*", self._on_call)

    def _on_call(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.actor is not None:
            service = model.service_model.service_name
            self.calls.append(ApiCall(self.actor, service, model.name, dict(params)))

    @contextmanager
    def acting(self, actor: str) -> Iterator[None]:
        previous, self.actor = self.actor, actor
        try:
            yield
        finally:
            self.actor = previous

    def since(self, start: int) -> list[ApiCall]:
        return self.calls[start:]


# --- template -> moto -----------------------------------------------------------------------------
class Resolver:
    """Resolves CloudFormation intrinsics against what `deploy` created for each logical id."""

    PSEUDO = {
        "AWS::Partition": "aws",
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::URLSuffix": "amazonaws.com",
    }

    def __init__(self, template: dict[str, Any]) -> None:
        self.template = template
        self.resources: dict[str, dict[str, Any]] = template["Resources"]
        self.physical: dict[str, dict[str, str]] = {}

    def attribute(self, logical_id: str, name: str) -> str:
        if logical_id not in self.resources:
            raise KeyError(f"template has no resource {logical_id}")
        known = self.physical.get(logical_id, {})
        # Resources moto does not hold (roles, log groups...) resolve to a placeholder that is unique to
        # the logical id, so a policy naming them can never be mistaken for one naming a data resource.
        return known.get(name, f"arn:aws:placeholder:{REGION}:{ACCOUNT}:{logical_id}/{name}")

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"Ref"}:
                ref = value["Ref"]
                return self.PSEUDO[ref] if ref.startswith("AWS::") else self.attribute(ref, "Ref")
            if set(value) == {"Fn::GetAtt"}:
                logical_id, name = value["Fn::GetAtt"]
                return self.attribute(logical_id, name)
            if set(value) == {"Fn::Join"}:
                separator, parts = value["Fn::Join"]
                return separator.join(str(self(part)) for part in parts)
            return {key: self(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self(item) for item in value]
        return value

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {lid: res for lid, res in self.resources.items() if res["Type"] == resource_type}

    def logical_id_of(self, attribute: str, value: str) -> str:
        for logical_id, known in self.physical.items():
            if known.get(attribute) == value:
                return logical_id
        raise KeyError(f"no deployed resource with {attribute} {value}")


def _props(resource: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = resource.get("Properties", {})
    return props


def deploy(template: dict[str, Any], session: boto3.Session) -> Resolver:
    """Create the template's keys, tables, buckets and queues in moto (mock must be active).

    moto's DynamoDB transactions get the local environment's fix (rtp_cli.local.emulation): a rollback
    snapshot of the touched items instead of a deep copy of the whole table per item, so a transaction
    costs what it writes, as in `rtp deploy --env local`, not what the table holds."""
    from rtp_cli.local.emulation import patch_moto_dynamodb

    patch_moto_dynamodb()
    resolve = Resolver(template)
    kms: Any = session.client("kms")
    ddb: Any = session.client("dynamodb")
    s3: Any = session.client("s3")
    sqs: Any = session.client("sqs")
    for logical_id in resolve.of_type("AWS::KMS::Key"):
        key = kms.create_key(Description=logical_id)["KeyMetadata"]
        resolve.physical[logical_id] = {"Ref": key["KeyId"], "Arn": key["Arn"]}

    for logical_id, resource in resolve.of_type("AWS::DynamoDB::Table").items():
        props = _props(resource)
        name = f"rtp-test-{logical_id}"
        args: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        if "GlobalSecondaryIndexes" in props:
            args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if "SSESpecification" in props:
            sse = resolve(props["SSESpecification"])
            args["SSESpecification"] = {
                "Enabled": sse["SSEEnabled"],
                "SSEType": sse.get("SSEType", "KMS"),
                **({"KMSMasterKeyId": sse["KMSMasterKeyId"]} if "KMSMasterKeyId" in sse else {}),
            }
        table = ddb.create_table(**args)["TableDescription"]
        if "TimeToLiveSpecification" in props:
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification=props["TimeToLiveSpecification"])
        resolve.physical[logical_id] = {"Ref": name, "Arn": table["TableArn"]}

    for logical_id, resource in resolve.of_type("AWS::S3::Bucket").items():
        name = f"rtp-test-{logical_id.lower()}"
        s3.create_bucket(Bucket=name)
        encryption = _props(resource).get("BucketEncryption")
        if encryption:
            rules = [  # CloudFormation's rule shape -> the S3 API's
                {
                    "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                    **({"BucketKeyEnabled": rule["BucketKeyEnabled"]} if "BucketKeyEnabled" in rule else {}),
                }
                for rule in resolve(encryption["ServerSideEncryptionConfiguration"])
            ]
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        resolve.physical[logical_id] = {"Ref": name, "Arn": f"arn:aws:s3:::{name}"}

    queues = resolve.of_type("AWS::SQS::Queue")
    # Dead-letter queues first: a redrive policy names its DLQ's ARN.
    for logical_id in sorted(queues, key=lambda lid: "RedrivePolicy" in _props(queues[lid])):
        props = _props(queues[logical_id])
        attributes: dict[str, str] = {
            name: str(resolve(props[name]))
            for name in (
                "VisibilityTimeout",
                "MessageRetentionPeriod",
                "KmsMasterKeyId",
                "KmsDataKeyReusePeriodSeconds",
                "DelaySeconds",
                "ReceiveMessageWaitTimeSeconds",
            )
            if name in props
        }
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(resolve(props["RedrivePolicy"]))
        name = f"rtp-test-{logical_id}"
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        resolve.physical[logical_id] = {"Ref": url, "Arn": arn, "QueueName": name}
    return resolve


# --- functions ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FunctionInfo:
    name: str  # short name: ingest, processor, query
    logical_id: str
    handler: str  # "module.function"
    environment: dict[str, str]
    role_logical_id: str


def functions_in(resolve: Resolver) -> dict[str, FunctionInfo]:
    """The template's handler functions (those whose code is handlers/), keyed by POWERTOOLS_SERVICE_NAME."""
    found: dict[str, FunctionInfo] = {}
    for logical_id, resource in resolve.of_type("AWS::Lambda::Function").items():
        props = _props(resource)
        variables = props.get("Environment", {}).get("Variables", {})
        if "POWERTOOLS_SERVICE_NAME" not in variables:
            continue  # CDK's helper functions (bucket auto-delete provider) are not ours
        environment = {key: str(value) for key, value in resolve(variables).items()}
        role = props["Role"]["Fn::GetAtt"][0]
        name = environment["POWERTOOLS_SERVICE_NAME"]
        found[name] = FunctionInfo(name, logical_id, props["Handler"], environment, role)
    return found


@dataclass
class FakeLambdaContext:
    function_name: str
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/test"
    log_stream_name: str = "test"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def api_event(
    method: str,
    path: str,
    *,
    resource: str | None = None,
    path_parameters: dict[str, str] | None = None,
    body: str | bytes | None = None,
    headers: dict[str, str] | None = None,
    base64_encoded: bool = False,
    request_id: str | None = None,
) -> dict[str, Any]:
    """An API Gateway REST API (v1) Lambda proxy event."""
    request_id = request_id or str(uuid.uuid4())
    if isinstance(body, bytes) or base64_encoded:
        raw = body if isinstance(body, bytes) else (body or "").encode()
        body, base64_encoded = base64.b64encode(raw).decode(), True
    headers = dict(headers or {})
    return {
        "resource": resource or path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "testapi",
            "resourcePath": resource or path,
            "httpMethod": method,
            "path": f"/v1{path}",
            "stage": "v1",
            "requestId": request_id,
            "requestTimeEpoch": 1_700_000_000_000,
            "identity": {"sourceIp": "192.0.2.1", "userArn": f"arn:aws:iam::{ACCOUNT}:user/producer"},
        },
        "body": body,
        "isBase64Encoded": base64_encoded,
    }


@dataclass(frozen=True)
class ApiResponse:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Delivery:
    """One event source mapping poll: what was delivered and what the function reported."""

    message_ids: list[str]
    failures: list[str]
    raised: BaseException | None = None


class Pipeline:
    def __init__(self, resolve: Resolver, session: boto3.Session, recorder: CallRecorder) -> None:
        self.resolve, self.session, self.recorder = resolve, session, recorder
        self.functions = functions_in(resolve)
        self.s3: Any = session.client("s3")
        self.sqs: Any = session.client("sqs")
        self.dynamodb: Any = session.client("dynamodb")
        mapping = next(iter(resolve.of_type("AWS::Lambda::EventSourceMapping").values()))
        self.esm = _props(mapping)
        self.queue_logical_id = self.esm["EventSourceArn"]["Fn::GetAtt"][0]
        redrive = resolve(_props(resolve.resources[self.queue_logical_id])["RedrivePolicy"])
        self.max_receive_count = int(redrive["maxReceiveCount"])
        self.dlq_url = resolve.physical[resolve.logical_id_of("Arn", redrive["deadLetterTargetArn"])]["Ref"]

    # --- names ---
    @property
    def queue_url(self) -> str:
        return self.resolve.physical[self.queue_logical_id]["Ref"]

    @property
    def table_name(self) -> str:
        return self.functions["ingest"].environment["TABLE_NAME"]

    @property
    def bucket(self) -> str:
        return self.functions["ingest"].environment["BUCKET_NAME"]

    # --- invoking ---
    @contextmanager
    def environment_of(self, function: str) -> Iterator[FunctionInfo]:
        """The function's environment variables (as the template sets them), for the block's duration."""
        info = self.functions[function]
        saved = {key: os.environ.get(key) for key in info.environment}
        os.environ.update(info.environment)
        _reset_caches()
        try:
            yield info
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def module(self, function: str) -> Any:
        """The function's handler module, imported (first time) under its own environment, as in Lambda:
        Powertools reads POWERTOOLS_SERVICE_NAME and friends when the module creates its Logger."""
        with self.environment_of(function) as info:
            return importlib.import_module(info.handler.rsplit(".", 1)[0])

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        """Run one function's handler as Lambda would: its environment, a context, calls attributed."""
        module = self.module(function)
        with self.environment_of(function) as info:
            handler: Callable[[dict[str, Any], Any], Any] = getattr(module, info.handler.rsplit(".", 1)[1])
            with self.recorder.acting(function):
                return handler(event, FakeLambdaContext(function_name=info.logical_id))

    def api(self, function: str, event: dict[str, Any]) -> ApiResponse:
        result = self.invoke(function, event)
        body = result.get("body")
        headers = {name.lower(): value for name, value in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name.lower()] = ",".join(values)
        return ApiResponse(
            status=result["statusCode"],
            headers=headers,
            body=json.loads(body) if body else None,
        )

    def post_records(
        self,
        payload: Any,
        *,
        headers: dict[str, str] | None = None,
        raw: str | bytes | None = None,
        request_id: str | None = None,
    ) -> ApiResponse:
        body = raw if raw is not None else json.dumps(payload)
        sent_headers = {"Content-Type": "application/json"} if headers is None else headers
        return self.api(
            "ingest",
            api_event("POST", "/records", body=body, headers=sent_headers, request_id=request_id),
        )

    def get_record(self, record_id: str) -> ApiResponse:
        event = api_event(
            "GET", f"/records/{record_id}", resource="/records/{id}", path_parameters={"id": record_id}
        )
        return self.api("query", event)

    def get_batch(self, batch_id: str) -> ApiResponse:
        event = api_event(
            "GET",
            f"/batches/{batch_id}",
            resource="/batches/{batchId}",
            path_parameters={"batchId": batch_id},
        )
        return self.api("query", event)

    # --- the event source mapping ---
    def receive(self, max_messages: int | None = None) -> dict[str, Any]:
        """Poll the work queue as the event source mapping does; returns the SQS event for the function."""
        with self.recorder.acting(f"processor [{ESM}]"):
            queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(max_messages or int(self.esm.get("BatchSize", 10)), 10),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
        return {
            "Records": [
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": message.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": message["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": queue_arn,
                    "awsRegion": REGION,
                }
                for message in messages
            ]
        }

    def deliver(self, max_messages: int | None = None) -> Delivery:
        """One poll: invoke the processor; delete what succeeded; make failures visible again at once
        (standing in for their visibility timeout running out)."""
        event = self.receive(max_messages)
        records = event["Records"]
        if not records:
            return Delivery([], [])
        ids = [record["messageId"] for record in records]
        raised: BaseException | None = None
        try:
            response = self.invoke("processor", event)
            failures = [item["itemIdentifier"] for item in response.get("batchItemFailures", [])]
        except Exception as error:  # the whole invocation failed: every message is retried
            raised, failures = error, list(ids)
        with self.recorder.acting(f"processor [{ESM}]"):
            for record in records:
                if record["messageId"] not in failures:
                    self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"])
        for record in records:  # not the function's or the mapping's call: the test's clock
            if record["messageId"] in failures:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
                )
        return Delivery(ids, failures, raised)

    def drain(self, max_polls: int = 20) -> list[Delivery]:
        deliveries = []
        for _ in range(max_polls):
            delivery = self.deliver()
            if not delivery.message_ids:
                break
            deliveries.append(delivery)
        return deliveries

    # --- inspecting ---
    def queued(self, url: str | None = None) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def peek(self, url: str | None = None) -> list[dict[str, Any]]:
        """Every message on a queue (bodies parsed), left in place for the next receive."""
        url = url or self.queue_url
        messages = self.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=0
        ).get("Messages", [])
        return messages

    def raw_keys(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return sorted(item["Key"] for item in listed)

    def item(self, pk: str) -> dict[str, Any] | None:
        from rtp_pipeline.storage import deserialize

        found = self.dynamodb.get_item(TableName=self.table_name, Key={"pk": {"S": pk}}, ConsistentRead=True)
        return deserialize(found["Item"]) if "Item" in found else None


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


def _reset_caches() -> None:
    from rtp_pipeline.settings import current_settings

    current_settings.cache_clear()


def reset_clients() -> None:
    from rtp_pipeline.aws import client

    client.cache_clear()


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


@contextmanager
def standalone_pipeline(template: dict[str, Any]) -> Iterator[Pipeline]:
    """A fresh moto account built from `template`, outside pytest (benchmarks): the test environment
    variables for the block, the handlers wired to moto. No IAM check on the way out."""
    import sys

    from moto import mock_aws

    handlers = str(Path(__file__).resolve().parents[2] / "handlers")  # the Lambda asset root, as in Lambda
    if handlers not in sys.path:
        sys.path.insert(0, handlers)
    elsewhere = [
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        *(f"AWS_ENDPOINT_URL_{s}" for s in ("S3", "SQS", "DYNAMODB")),
    ]
    saved = {name: os.environ.get(name) for name in (*LAMBDA_ENVIRONMENT, *elsewhere)}
    for name in elsewhere:
        os.environ.pop(name, None)
    os.environ.update(LAMBDA_ENVIRONMENT)
    try:
        with mock_aws():
            session = boto3.Session(region_name=REGION)
            recorder = CallRecorder()
            recorder.attach(session)
            previous, boto3.DEFAULT_SESSION = boto3.DEFAULT_SESSION, session
            reset_clients()
            try:
                yield Pipeline(deploy(template, session), session, recorder)
            finally:
                reset_clients()
                boto3.DEFAULT_SESSION = previous
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
