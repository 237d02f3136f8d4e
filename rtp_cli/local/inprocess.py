"""The local runtime in this process: the template's data resources in moto, the handlers imported here.

What the handler tests, the benchmarks and anything else that drives the handlers without worker
processes use, built from the same pieces `rtp deploy --env local` serves with, so a resource type, a
route or an event source mapping rule is taught once:

- `provision_template`: every data resource of a synthesized template created in moto by the local
  runtime's provisioner (`resources.provision`), intrinsics resolved by its `Template`;
- `pipeline_functions`: the template's functions with their environments resolved (`function_specs`);
- `proxy_event` (`api.py`): the REST API proxy event; routes come from the template (`ApiModel.route`);
- `LocalLambdaContext` (`worker.py`): the context object, from the variables the Lambda runtime sets
  (`lambda_variables`);
- the SQS event source mapping's rules (`esm.py`: receive, the SQS event, which messages stay, delete);
- `CallRecorder`: every AWS API call attributed to the function (or its event source mapping) that made
  it, for the per-call IAM check against the function's role (`rtp_cli.local.iam`).

Imports nothing from tests/. Only `standalone_pipeline` enters moto's mock itself (a caller of
`provision_template` holds the mock).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from rtp_cli.local.esm import (
    MappingSpec,
    delete_succeeded,
    mapping_of_queue,
    mapping_specs,
    receive,
    settle,
    source_attributes,
    sqs_event,
)
from rtp_cli.local.functions import FunctionSpec, function_specs, lambda_variables
from rtp_cli.local.gateway import ApiModel, proxy_event
from rtp_cli.local.iam import ESM, ApiCall
from rtp_cli.local.resources import provision
from rtp_cli.local.template import ACCOUNT_ID, Template, TemplateError
from rtp_cli.local.worker import LocalLambdaContext

REGION = "us-east-1"
ACCOUNT = ACCOUNT_ID  # moto's default account
STACK_NAME = "rtp-test"
HANDLERS = Path(__file__).resolve().parents[2] / "handlers"  # the Lambda asset's source

# The functions' process environment in-process: fake credentials and region (moto answers everything,
# nothing can reach AWS); Powertools as in Lambda, minus X-Ray (no daemon here); Metrics needs its
# namespace at import.
LAMBDA_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "rtp-test",
}
# Variables that would send the handlers' clients somewhere other than moto.
ELSEWHERE = ("AWS_PROFILE", "AWS_ENDPOINT_URL", *(f"AWS_ENDPOINT_URL_{s}" for s in ("S3", "SQS", "DYNAMODB")))


# --- call recording -------------------------------------------------------------------------------
class Acting:
    """Who is calling AWS now: a function, its event source mapping, or nobody (setup, inspection)."""

    actor: str | None = None

    @contextmanager
    def acting(self, actor: str) -> Iterator[None]:
        previous, self.actor = self.actor, actor
        try:
            yield
        finally:
            self.actor = previous


class CallRecorder(Acting):
    """Records every API call made through a boto3 session while an actor is set."""

    def __init__(self) -> None:
        self.calls: list[ApiCall] = []

    def attach(self, session: boto3.Session) -> None:
        # provide-client-params fires once per API call (not per retry) with the caller's parameters.
        session.events.register("provide-client-params.*.*", self._on_call)

    def _on_call(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.actor is not None:
            service = model.service_model.service_name
            self.calls.append(ApiCall(self.actor, service, model.name, dict(params)))

    def since(self, start: int) -> list[ApiCall]:
        return self.calls[start:]


# --- template -> moto -----------------------------------------------------------------------------
class Resolver(Template):
    """The local runtime's `Template`, callable as its resolver. A Ref or GetAtt to something the local
    runtime does not create (or before provisioning) resolves to a placeholder unique to the logical id,
    so a policy naming it can never be mistaken for one naming a data resource."""

    def __init__(self, document: dict[str, Any], stack_name: str = STACK_NAME, region: str = REGION) -> None:
        super().__init__(document, None, stack_name, region)

    def __call__(self, value: Any) -> Any:
        return self.resolve(value)

    def _placeholder(self, logical_id: str, name: str) -> str:
        if logical_id not in self.resources:
            raise TemplateError(f"template has no resource {logical_id}")
        return f"arn:aws:placeholder:{self.region}:{ACCOUNT}:{logical_id}/{name}"

    def _ref(self, name: str) -> Any:
        if name in self.resources and name not in self.refs:
            return self._placeholder(name, "Ref")
        return super()._ref(name)

    def _get_att(self, arg: Any) -> str:
        try:
            return super()._get_att(arg)
        except TemplateError:
            logical_id, attribute = (arg.split(".", 1) if isinstance(arg, str) else arg)[:2]
            return self._placeholder(logical_id, attribute)

    def logical_id_of(self, ref: str) -> str:
        """The logical id whose Ref is `ref` (a table name, a bucket name, a queue URL)."""
        for logical_id, value in self.refs.items():
            if value == ref:
                return logical_id
        raise KeyError(f"no provisioned resource with Ref {ref}")


def provision_template(
    document: dict[str, Any], session: boto3.Session, stack_name: str = STACK_NAME
) -> Resolver:
    """Create the template's data resources in moto (its mock must be active) with the local runtime's
    provisioner. moto's DynamoDB transactions get the local environment's fix (rtp_cli.local.emulation):
    a transaction costs what it writes, as in `rtp deploy --env local`, not what the table holds."""
    from rtp_cli.local.emulation import patch_moto_dynamodb

    patch_moto_dynamodb()
    template = Resolver(document, stack_name)
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in clients:
            make: Any = session.client
            clients[service] = make(service)
        return clients[service]

    provision(template, client)
    return template


def pipeline_functions(template: Template) -> dict[str, FunctionSpec]:
    """The template's Python functions, environments resolved, keyed by POWERTOOLS_SERVICE_NAME."""
    return {
        spec.environment.get("POWERTOOLS_SERVICE_NAME", logical_id): spec
        for logical_id, spec in function_specs(template, code_dir=HANDLERS).items()
    }


@contextmanager
def environment_variables(variables: dict[str, str], removed: tuple[str, ...] = ()) -> Iterator[None]:
    """`variables` set and `removed` unset in os.environ for the block, everything restored after."""
    saved = {name: os.environ.get(name) for name in (*variables, *removed)}
    for name in removed:
        os.environ.pop(name, None)
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def function_environment(spec: FunctionSpec) -> Iterator[FunctionSpec]:
    """The function's environment variables (the template's and the Lambda runtime's), for the block."""
    with environment_variables({**spec.environment, **lambda_variables(spec, f"in-process/{spec.name}")}):
        yield spec


def lambda_context(spec: FunctionSpec) -> LocalLambdaContext:
    """The context object, inside `function_environment(spec)`: the function's timeout starts now."""
    return LocalLambdaContext(str(uuid.uuid4()), time.time() + spec.timeout)


# --- the in-process pipeline ----------------------------------------------------------------------
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
    """The template's functions invoked in this process against its resources in moto: API requests
    routed by the template's REST API, the SQS event source mapping played poll by poll, every AWS call
    attributed to its function by `recorder`."""

    def __init__(self, resolve: Resolver, session: boto3.Session, recorder: CallRecorder) -> None:
        self.resolve, self.session, self.recorder = resolve, session, recorder
        self.functions = pipeline_functions(resolve)
        self._names = {spec.logical_id: name for name, spec in self.functions.items()}
        self.s3: Any = session.client("s3")
        self.sqs: Any = session.client("sqs")
        self.dynamodb: Any = session.client("dynamodb")
        self.routes = ApiModel(resolve)
        mappings = mapping_specs(resolve)
        # The live work queue is the one ingest sends to; the replay queue the one `rtp replay` sends to.
        self.mapping = mapping_of_queue(mappings, self.functions["ingest"].environment["QUEUE_URL"])
        self.replay_mapping = mapping_of_queue(
            mappings, self.functions["processor"].environment["REPLAY_QUEUE_URL"]
        )
        self.esm = resolve.props(self.mapping.logical_id)
        self.queue_logical_id = resolve.logical_id_of(self.mapping.queue_url)
        self.processor = self._names[self.mapping.function]
        redrive = resolve.resolve(resolve.props(self.queue_logical_id)["RedrivePolicy"])
        self.max_receive_count = int(redrive["maxReceiveCount"])
        dlq = next(lid for lid, arn in _arns(resolve).items() if arn == redrive["deadLetterTargetArn"])
        self.dlq_url = resolve.refs[dlq]

    # --- names ---
    @property
    def queue_url(self) -> str:
        return self.mapping.queue_url

    @property
    def table_name(self) -> str:
        return self.functions["ingest"].environment["TABLE_NAME"]

    @property
    def bucket(self) -> str:
        return self.functions["ingest"].environment["BUCKET_NAME"]

    # --- invoking ---
    @contextmanager
    def environment_of(self, function: str) -> Iterator[FunctionSpec]:
        """The function's environment variables (as the template sets them), for the block's duration;
        settings are read afresh, as by a new execution environment."""
        with function_environment(self.functions[function]) as spec:
            _reset_settings()
            yield spec

    def module(self, function: str) -> Any:
        """The function's handler module, imported (first time) under its own environment, as in Lambda:
        Powertools reads POWERTOOLS_SERVICE_NAME and friends when the module creates its Logger."""
        with self.environment_of(function) as spec:
            return importlib.import_module(spec.handler.rsplit(".", 1)[0])

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        """Run one function's handler as Lambda would: its environment, a context, calls attributed."""
        module = self.module(function)
        with self.environment_of(function) as spec:
            handler: Callable[[dict[str, Any], Any], Any] = getattr(module, spec.handler.rsplit(".", 1)[1])
            with self.recorder.acting(function):
                return handler(event, lambda_context(spec))

    def api(self, function: str, event: dict[str, Any]) -> ApiResponse:
        result = self.invoke(function, event)
        body = result.get("body")
        headers = {name.lower(): value for name, value in (result.get("headers") or {}).items()}
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name.lower()] = ",".join(values)
        return ApiResponse(
            status=result["statusCode"], headers=headers, body=json.loads(body) if body else None
        )

    def request(
        self,
        method: str,
        resource: str,
        path_parameters: dict[str, str] | None = None,
        *,
        body: str | bytes | None = None,
        headers: dict[str, str] | None = None,
        request_id: str | None = None,
    ) -> ApiResponse:
        """A request to a method of the template's REST API (`resource` as the template names it, e.g.
        `/records/{id}`, with its path parameters) through the integration's function, as API Gateway
        sends it (no gateway validation: the handlers' own answers are under test)."""
        route = self.routes.methods.get((resource, method)) or self.routes.methods.get((resource, "ANY"))
        if route is None:
            raise TemplateError(f"the template's REST API has no {method} {resource}")
        path = resource
        for name, value in (path_parameters or {}).items():
            path = path.replace(f"{{{name}}}", value)
        event = proxy_event(
            method,
            path,
            resource=resource,
            stage=self.routes.stage,
            api_id=self.routes.api_id,
            path_parameters=path_parameters,
            headers=headers,
            body=body,
            request_id=request_id,
        )
        return self.api(self._names[route.function], event)

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
        return self.request("POST", "/records", body=body, headers=sent_headers, request_id=request_id)

    def get_record(self, record_id: str) -> ApiResponse:
        return self.request("GET", "/records/{id}", {"id": record_id})

    def get_batch(self, batch_id: str) -> ApiResponse:
        return self.request("GET", "/batches/{batchId}", {"batchId": batch_id})

    # --- the event source mapping ---
    @property
    def replay_queue_url(self) -> str:
        return self.replay_mapping.queue_url

    def _received(self, max_messages: int | None, mapping: MappingSpec) -> list[dict[str, Any]]:
        with self.recorder.acting(f"{self.processor} [{ESM}]"):
            source_attributes(self.sqs, mapping)
            return receive(self.sqs, mapping, max_messages or mapping.batch_size)

    def receive(self, max_messages: int | None = None) -> dict[str, Any]:
        """Poll the work queue as the event source mapping does; returns the SQS event for the function."""
        return sqs_event(self._received(max_messages, self.mapping), self.mapping, REGION)

    def deliver(self, max_messages: int | None = None, replay: bool = False) -> Delivery:
        """One poll (of the replay queue's mapping with `replay`): invoke the processor; delete what
        succeeded; make failures visible again at once (standing in for their visibility timeout running
        out)."""
        mapping = self.replay_mapping if replay else self.mapping
        messages = self._received(max_messages, mapping)
        if not messages:
            return Delivery([], [])
        ids = [message["MessageId"] for message in messages]
        raised: BaseException | None = None
        try:
            result, ok = self.invoke(self.processor, sqs_event(messages, mapping, REGION)), True
        except Exception as error:  # the whole invocation failed: every message is retried
            raised, result, ok = error, None, False
        failed = settle(mapping, messages, ok, result)
        with self.recorder.acting(f"{self.processor} [{ESM}]"):
            delete_succeeded(self.sqs, mapping, messages, failed)
        for message in messages:  # not the function's or the mapping's call: the test's clock
            if message["MessageId"] in failed:
                self.sqs.change_message_visibility(
                    QueueUrl=mapping.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
        return Delivery(ids, [i for i in ids if i in failed], raised)

    def drain(self, max_polls: int = 20, replay: bool = False) -> list[Delivery]:
        deliveries = []
        for _ in range(max_polls):
            delivery = self.deliver(replay=replay)
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
        """Every message on a queue (up to 10), left in place for the next receive."""
        messages: list[dict[str, Any]] = self.sqs.receive_message(
            QueueUrl=url or self.queue_url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            VisibilityTimeout=0,
        ).get("Messages", [])
        return messages

    def raw_keys(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return sorted(item["Key"] for item in listed)

    def item(self, pk: str) -> dict[str, Any] | None:
        from rtp_pipeline.storage import deserialize

        found = self.dynamodb.get_item(TableName=self.table_name, Key={"pk": {"S": pk}}, ConsistentRead=True)
        return deserialize(found["Item"]) if "Item" in found else None

    def items(self, pks: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """`item` for many keys: BatchGetItem, 100 keys a request (its limit), consistent reads; a key
        DynamoDB leaves unprocessed is asked again. Every key maps to its item or None.
        https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html"""
        from rtp_pipeline.storage import deserialize

        wanted = list(dict.fromkeys(pks))
        found: dict[str, dict[str, Any] | None] = dict.fromkeys(wanted)
        for start in range(0, len(wanted), 100):
            request = {
                self.table_name: {
                    "Keys": [{"pk": {"S": pk}} for pk in wanted[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            for _ in range(10):  # moto leaves keys unprocessed only past 16 MB of answer
                answer = self.dynamodb.batch_get_item(RequestItems=request)
                for raw in answer["Responses"].get(self.table_name, []):
                    item = deserialize(raw)
                    found[item["pk"]] = item
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
            if request:
                raise RuntimeError(f"BatchGetItem left keys unprocessed 10 times: {request}")
        return found

    def send_replay(self, batch_id: str, replay_id: str, **filters: str) -> str:
        """Put a replay message for one accepted batch on the replay queue (what `rtp replay` sends):
        the claim check rebuilt from the batch item, with a `replay` member (`filters`: status, reason,
        processed_from, processed_to). Returns the message body."""
        from rtp_pipeline.storage import ClaimCheck, ReplayRequest, batch_pk

        batch = self.item(batch_pk(batch_id))
        if batch is None:
            raise ValueError(f"no batch {batch_id}")
        claim = ClaimCheck(
            batch_id,
            self.bucket,
            batch["rawKey"],
            batch.get("correlationId", ""),
            batch["receivedAt"],
            int(batch["accepted"]),
            ReplayRequest(replay_id, **filters),
            by_record=batch.get("byRecord") is True,
        )
        body = claim.to_json()
        self.sqs.send_message(QueueUrl=self.replay_queue_url, MessageBody=body)
        return body


def _arns(template: Template) -> dict[str, str]:
    return {logical_id: arn for (logical_id, name), arn in template.attrs.items() if name == "Arn"}


def _reset_settings() -> None:
    from rtp_pipeline.settings import current_settings

    current_settings.cache_clear()


def reset_clients() -> None:
    """rtp_pipeline.aws.client is cached per execution environment: a fresh account gets fresh clients."""
    from rtp_pipeline.aws import client

    client.cache_clear()


@contextmanager
def standalone_pipeline(document: dict[str, Any]) -> Iterator[Pipeline]:
    """A fresh moto account built from `document`, outside pytest (benchmarks): LAMBDA_ENVIRONMENT for
    the block, the handlers (handlers/ on sys.path, as the asset root is in Lambda) wired to moto."""
    from moto import mock_aws

    if str(HANDLERS) not in sys.path:
        sys.path.insert(0, str(HANDLERS))
    with environment_variables(LAMBDA_ENVIRONMENT, ELSEWHERE), mock_aws(), moto_session() as session:
        recorder = CallRecorder()
        recorder.attach(session)
        yield Pipeline(provision_template(document, session), session, recorder)


def lambda_session() -> boto3.Session:
    """A boto3 session made in LAMBDA_ENVIRONMENT: a session reads the AWS config files and profile once,
    when it is made, so one made for a whole test run must not see the developer's (an endpoint_url or a
    profile there would send the handlers' calls past moto, or fail every test)."""
    with environment_variables(LAMBDA_ENVIRONMENT, ELSEWHERE):
        return boto3.Session(region_name=REGION)


@contextmanager
def moto_session(session: boto3.Session | None = None) -> Iterator[boto3.Session]:
    """`session` (or a new one) as boto3's default for the block, which the handlers' clients come from,
    with their cached clients dropped on the way in and out."""
    session = session or boto3.Session(region_name=REGION)
    previous, boto3.DEFAULT_SESSION = boto3.DEFAULT_SESSION, session
    reset_clients()
    try:
        yield session
    finally:
        reset_clients()
        boto3.DEFAULT_SESSION = previous
