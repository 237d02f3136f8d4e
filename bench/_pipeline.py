"""The real handlers, in this process, against moto: the stack's resources built from a synthesized
template, every AWS call counted (botocore's `provide-client-params` and `after-call` events on the
session the handlers' clients come from), DynamoDB request units computed from the items each call
touched (read from moto before and after it, through a separate session that is not counted).

Shared by bench/cost.py and its tests; imports nothing from tests/. The template's resources, the
functions' environments and context, the API's proxy events and the event source mapping's rules are the
local runtime's own (`rtp_cli.local.inprocess`, as the handler tests use them), so what runs here is what
`rtp deploy --env local` serves and what the stack deploys.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from bench import ddb_units
from rtp_cli.local.esm import delete_succeeded, mapping_of_queue, mapping_specs, receive, settle, sqs_event
from rtp_cli.local.functions import FunctionSpec
from rtp_cli.local.inprocess import (
    HANDLERS,
    LAMBDA_ENVIRONMENT,
    REGION,
    Acting,
    environment_variables,
    function_environment,
    lambda_context,
    pipeline_functions,
    provision_template,
    proxy_event,
)
from rtp_cli.local.partiql import parse_insert

SQS_CHUNK_BYTES = 64 * 1024  # every 64 KB chunk of a payload is one billed SQS request (rtp_cli/pricing.py)


@dataclass
class Call:
    actor: str
    service: str
    operation: str
    params: dict[str, Any]
    error: str = ""
    billed_requests: int = 1  # SQS: one per 64 KB chunk
    returned_messages: int = -1  # SQS ReceiveMessage only
    bytes_in: int = 0  # S3 PutObject body


@dataclass
class _Pending:
    call: Call
    table: ddb_units.Table | None = None
    targets: list[tuple[str, dict[str, Any], bool]] = field(
        default_factory=list
    )  # action, key, condition check
    before: list[dict[str, Any] | None] = field(default_factory=list)


class Recorder(Acting):
    """Every API call made through `session` while an actor is set, and the DynamoDB units it consumed."""

    def __init__(self, inspector: boto3.Session) -> None:
        self.calls: list[Call] = []
        self.charges: list[tuple[str, ddb_units.Charge]] = []  # (actor, charge)
        self.actor: str | None = None
        self.overhead = 0.0  # seconds spent inspecting moto, taken out of measured durations
        self.cancelled_transactions = 0
        self._inspect: Any = inspector.client("dynamodb", region_name=REGION)
        self._tables: dict[str, ddb_units.Table] = {}

    def attach(self, session: boto3.Session) -> None:
        # Fired once per API call (not per retry), with the caller's parameters and the parsed answer.
        session.events.register("provide-client-params.*.*", self._before)
        session.events.register("after-call.*.*", self._after)

    # --- hooks -----------------------------------------------------------------------------------
    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if self.actor is None:
            return
        started = time.perf_counter()
        call = Call(self.actor, model.service_model.service_name, model.name, dict(params))
        self.calls.append(call)
        pending = _Pending(call)
        if call.service == "dynamodb":
            self._dynamodb_before(pending)
        context["rtp_bench"] = pending
        self.overhead += time.perf_counter() - started

    def _after(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        pending: _Pending | None = context.get("rtp_bench")
        if pending is None:
            return
        started = time.perf_counter()
        call = pending.call
        call.error = str(parsed.get("Error", {}).get("Code", "")) if isinstance(parsed, dict) else ""
        if call.service == "dynamodb":
            self._dynamodb_after(pending, parsed)
        elif call.service == "sqs":
            self._sqs(call, parsed)
        elif call.service == "s3" and call.operation == "PutObject":
            body = call.params.get("Body", b"")
            call.bytes_in = len(body.encode() if isinstance(body, str) else body or b"")
        self.overhead += time.perf_counter() - started

    # --- SQS -------------------------------------------------------------------------------------
    @staticmethod
    def _sqs(call: Call, parsed: dict[str, Any]) -> None:
        def chunks(size: int) -> int:
            return max(1, math.ceil(size / SQS_CHUNK_BYTES))

        def attributes(entry: dict[str, Any]) -> int:
            return sum(
                len(name) + len(str(v.get("StringValue", ""))) + len(v.get("BinaryValue", b"") or b"")
                for name, v in (entry.get("MessageAttributes") or {}).items()
            )

        params = call.params
        if call.operation == "SendMessage":
            call.billed_requests = chunks(len(params["MessageBody"].encode()) + attributes(params))
        elif call.operation == "SendMessageBatch":
            total = sum(len(e["MessageBody"].encode()) + attributes(e) for e in params["Entries"])
            call.billed_requests = chunks(total)
        elif call.operation == "ReceiveMessage":
            messages = parsed.get("Messages", [])
            call.returned_messages = len(messages)
            call.billed_requests = chunks(sum(len(m.get("Body", "").encode()) for m in messages))

    # --- DynamoDB --------------------------------------------------------------------------------
    def table(self, name: str) -> ddb_units.Table:
        if name not in self._tables:
            description = self._inspect.describe_table(TableName=name)["Table"]
            self._tables[name] = ddb_units.Table.from_description(description)
        return self._tables[name]

    def _items(self, table: ddb_units.Table, keys: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
        """The stored items at `keys` (consistent reads through the uncounted inspector session)."""
        found: dict[str, dict[str, Any]] = {}
        unique = list({json.dumps(k, sort_keys=True): k for k in keys}.values())
        for start in range(0, len(unique), 100):
            request = {table.name: {"Keys": unique[start : start + 100], "ConsistentRead": True}}
            while request:
                answer = self._inspect.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(table.name, []):
                    found[json.dumps(table.key_of(item), sort_keys=True)] = item
                request = answer.get("UnprocessedKeys") or {}
        return [found.get(json.dumps(k, sort_keys=True)) for k in keys]

    def _dynamodb_before(self, pending: _Pending) -> None:
        params, operation = pending.call.params, pending.call.operation
        targets: list[tuple[str, str, dict[str, Any], bool]] = []  # table, action, key, condition check
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            table = self.table(params["TableName"])
            key = table.key_of(params["Item"]) if operation == "PutItem" else dict(params["Key"])
            targets.append((table.name, operation, key, False))
        elif operation == "TransactWriteItems":
            for action in params["TransactItems"]:
                ((kind, body),) = action.items()
                table = self.table(body["TableName"])
                key = table.key_of(body["Item"]) if kind == "Put" else dict(body["Key"])
                targets.append((table.name, kind, key, kind == "ConditionCheck"))
        elif operation == "BatchWriteItem":
            for table_name, requests in params["RequestItems"].items():
                table = self.table(table_name)
                for request in requests:
                    if "PutRequest" in request:
                        targets.append(
                            (table_name, "Put", table.key_of(request["PutRequest"]["Item"]), False)
                        )
                    else:
                        targets.append((table_name, "Delete", dict(request["DeleteRequest"]["Key"]), False))
        elif operation == "BatchExecuteStatement":
            for statement in params["Statements"]:
                insert = parse_insert(statement["Statement"], statement.get("Parameters", []))
                if insert is None:
                    raise NotImplementedError("PartiQL statements other than INSERT are not metered yet")
                table = self.table(insert[0])
                targets.append((table.name, "Put", table.key_of(insert[1]), False))
        if not targets:
            return
        names = {t[0] for t in targets}
        if len(names) != 1:
            raise NotImplementedError("writes spanning several tables are not metered yet")
        pending.table = self.table(names.pop())
        pending.targets = [(action, key, check) for _, action, key, check in targets]
        pending.before = self._items(pending.table, [key for _, key, _ in pending.targets])

    def _dynamodb_after(self, pending: _Pending, parsed: dict[str, Any]) -> None:
        call = pending.call
        actor = call.actor
        if pending.table is not None:
            table = pending.table
            after = self._items(table, [key for _, key, _ in pending.targets])
            transactional = call.operation == "TransactWriteItems"
            unprocessed = {
                json.dumps(
                    table.key_of(r.get("PutRequest", {}).get("Item") or r["DeleteRequest"]["Key"]),
                    sort_keys=True,
                )
                for requests in (parsed.get("UnprocessedItems") or {}).values()
                for r in requests
            }
            if call.error == "TransactionCanceledException":
                # Not spelled out by AWS: charged here as if each action had read its item in both phases
                # (the existing item's units, 1 if none, doubled). Counted, so a report can say how often.
                self.cancelled_transactions += 1
            # A PartiQL batch answers each statement: a DuplicateItem INSERT is charged as the failed
            # conditional put it is (an INSERT is a put conditioned on the key being free); other errors not.
            statement_errors = [
                str((answer.get("Error") or {}).get("Code", "")) for answer in parsed.get("Responses", [])
            ]
            for position, ((_, key, check), old, new) in enumerate(
                zip(pending.targets, pending.before, after, strict=True)
            ):
                if json.dumps(key, sort_keys=True) in unprocessed:
                    continue
                if call.error and call.error not in (
                    "ConditionalCheckFailedException",
                    "TransactionCanceledException",
                ):
                    continue  # throttled or invalid: not performed, not charged
                refused = statement_errors[position] if call.operation == "BatchExecuteStatement" else ""
                if refused not in ("", "DuplicateItem"):
                    continue
                charges = ddb_units.write_charges(
                    table,
                    old,
                    new,
                    key=key,
                    transactional=transactional,
                    succeeded=not call.error and not refused,
                    condition_check=check,
                )
                self.charges.extend((actor, c) for c in charges)
            return
        params, operation = call.params, call.operation
        if call.error:
            return
        if operation == "GetItem":
            table = self.table(params["TableName"])
            # Units count the whole item even when a projection returns less (same AWS page).
            [item] = self._items(table, [dict(params["Key"])])
            consistency = "strong" if params.get("ConsistentRead") else "eventual"
            self.charges.append((actor, ddb_units.read_charge(table, item, params["Key"], consistency)))
        elif operation == "BatchGetItem":
            for table_name, request in params["RequestItems"].items():
                table = self.table(table_name)
                keys = [dict(k) for k in request["Keys"]]
                consistency = "strong" if request.get("ConsistentRead") else "eventual"
                for key, item in zip(keys, self._items(table, keys), strict=True):
                    self.charges.append((actor, ddb_units.read_charge(table, item, key, consistency)))
        elif operation == "TransactGetItems":
            for action in params["TransactItems"]:
                body = action["Get"]
                table = self.table(body["TableName"])
                [item] = self._items(table, [dict(body["Key"])])
                self.charges.append((actor, ddb_units.read_charge(table, item, body["Key"], "transactional")))
        elif operation in ("Query", "Scan"):
            # Approximation: the items returned (a filter would make DynamoDB charge for more).
            table = self.table(params["TableName"])
            size = sum(ddb_units.item_size(i) for i in parsed.get("Items", []))
            consistency = "strong" if params.get("ConsistentRead") else "eventual"
            units = ddb_units.read_units(size, consistency)
            self.charges.append((actor, ddb_units.Charge(operation.lower(), "read", units, size)))


class LogSink(io.TextIOBase):
    """Where the functions' stdout (Powertools logs, EMF metrics) goes: counted per actor, then dropped."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder
        self.bytes: Counter[str] = Counter()
        self.metrics: set[tuple[str, str, tuple[str, ...]]] = set()  # namespace, name, dimensions
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        actor = self.recorder.actor or "-"
        self.bytes[actor] += len(text.encode("utf-8"))
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._emf(line)
        return len(text)

    def _emf(self, line: str) -> None:
        if '"_aws"' not in line:
            return
        with contextlib.suppress(ValueError, KeyError, TypeError):
            document = json.loads(line)
            for directive in document["_aws"]["CloudWatchMetrics"]:
                for dimensions in directive.get("Dimensions", [[]]):
                    for metric in directive["Metrics"]:
                        self.metrics.add((directive["Namespace"], metric["Name"], tuple(dimensions)))


@dataclass
class Invocation:
    actor: str
    seconds: float  # handler wall time in this process, less the recorder's own inspection time
    result: Any
    cold: bool = False  # the first in this environment: created its clients


class Pipeline:
    """The template's resources in moto (call inside `mock_aws()`), its functions' handlers in-process."""

    def __init__(self, template_path: Path, stack_name: str) -> None:
        if str(HANDLERS) not in sys.path:
            sys.path.insert(0, str(HANDLERS))  # the Lambda asset root: its modules are top-level
        self.session = boto3.Session(region_name=REGION)
        self.recorder = Recorder(boto3.Session(region_name=REGION))
        self.recorder.attach(self.session)
        self.sink = LogSink(self.recorder)
        # Created through an uncounted session: provisioning is not the pipeline's traffic.
        document = json.loads(template_path.read_text(encoding="utf-8"))
        self.template = provision_template(document, boto3.Session(region_name=REGION), stack_name)
        self.functions: dict[str, FunctionSpec] = pipeline_functions(self.template)
        self._sqs: Any = self.session.client("sqs")  # counted
        self._current: str | None = None  # the function whose caches are live
        self.mapping = mapping_of_queue(
            mapping_specs(self.template), self.functions["ingest"].environment["QUEUE_URL"]
        )
        self.esm = self.template.resolve(self.template.props(self.mapping.logical_id))
        self.queue_url = self.mapping.queue_url
        self.queue_arn = self.mapping.queue_arn
        self._modules: dict[str, Any] = {}

    # --- running a function ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _environment(self, function: str) -> Iterator[FunctionSpec]:
        previous_session, boto3.DEFAULT_SESSION = boto3.DEFAULT_SESSION, self.session
        if self._current != function:
            # Settings and clients are cached per execution environment: a warm environment keeps them,
            # another function gets its own (the first invocation after a switch is a cold one).
            _clear_caches()
            self._current = function
        try:
            with (
                environment_variables(LAMBDA_ENVIRONMENT),
                function_environment(self.functions[function]) as spec,
                contextlib.redirect_stdout(self.sink),
            ):
                yield spec
        finally:
            boto3.DEFAULT_SESSION = previous_session

    def _handler(self, function: str) -> Callable[[Any, Any], Any]:
        spec = self.functions[function]
        module_name, _, attribute = spec.handler.rpartition(".")
        if function not in self._modules:
            with self._environment(function):
                module = importlib.import_module(module_name)
            for value in vars(module).values():  # Powertools Loggers keep the stream they started with
                log_handler = getattr(value, "registered_handler", None)
                if log_handler is not None and hasattr(log_handler, "setStream"):
                    log_handler.setStream(self.sink)
            self._modules[function] = module
        handler: Callable[[Any, Any], Any] = getattr(self._modules[function], attribute)
        return handler

    def invoke(self, function: str, event: Any) -> Invocation:
        cold = self._current != function
        handler = self._handler(function)
        with self._environment(function) as spec, self.recorder.acting(function):
            context = lambda_context(spec)
            overhead = self.recorder.overhead
            started = time.perf_counter()
            result = handler(event, context)
            elapsed = time.perf_counter() - started - (self.recorder.overhead - overhead)
        return Invocation(function, elapsed, result, cold)

    # --- the API and the event source mapping -------------------------------------------------------
    def post(self, body: str, headers: dict[str, str]) -> tuple[int, Any, Invocation]:
        event = proxy_event(
            "POST", "/records", resource="/records", api_id="bench", headers=headers, body=body
        )
        invocation = self.invoke("ingest", event)
        result = invocation.result
        return int(result["statusCode"]), json.loads(result.get("body") or "null"), invocation

    def get(self, resource: str, path: str, parameters: dict[str, str]) -> tuple[int, Any]:
        event = proxy_event("GET", path, resource=resource, api_id="bench", path_parameters=parameters)
        result = self.invoke("query", event).result
        return int(result["statusCode"]), json.loads(result.get("body") or "null")

    def deliver(self) -> Invocation | None:
        """One poll of the event source mapping (as Lambda's pollers do: receive a batch, invoke, delete
        what succeeded in one batch call). None when the queue is empty (that poll is not counted)."""
        with self.recorder.acting("esm"):
            messages = receive(self.sqs_client(), self.mapping, self.mapping.batch_size)
        if not messages:
            self.recorder.calls.pop()  # an idle poll: estimated separately (rtp_cli/cost.py)
            return None
        invocation = self.invoke("processor", sqs_event(messages, self.mapping, REGION))
        failed = settle(self.mapping, messages, True, invocation.result)
        if failed:
            raise RuntimeError(
                f"the processor reported {len(failed)} failed message(s): the bench needs a clean run"
            )
        with self.recorder.acting("esm"):
            delete_succeeded(self.sqs_client(), self.mapping, messages, failed)
        return invocation

    def sqs_client(self) -> Any:
        return self._sqs

    def stored_items(self, table_name: str) -> list[dict[str, Any]]:
        """Every item in the table (uncounted), for storage figures."""
        scan: Any = self.recorder._inspect
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {"TableName": table_name, "ConsistentRead": True}
        while True:
            page = scan.scan(**request)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _clear_caches() -> None:
    """Settings and boto3 clients are cached per execution environment (functools caches in the domain
    package): clear every one of them, whatever they are called after a refactor."""
    for name, module in list(sys.modules.items()):
        if not (name == "rtp_pipeline" or name.startswith("rtp_pipeline.")) or module is None:
            continue
        for value in vars(module).values():
            clear = getattr(value, "cache_clear", None)
            if callable(clear):
                clear()
