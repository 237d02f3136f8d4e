"""Check recorded AWS API calls against each function's IAM policy in the synthesized template.

Every call a handler made becomes the IAM action(s) it needs on the resource it touched (ARN built from
the call's parameters), plus the KMS actions the service then performs with the caller's credentials
(SSE-KMS on S3 objects and SQS messages). Policy statements are taken from the template (the function's
`Role` -> the `AWS::IAM::Policy` resources attached to it) and their resources resolved against the
resources the local runtime created for each logical id (`inprocess.provision_template`): a statement on
`Fn::GetAtt [Table, Arn]` matches calls on exactly that table, `Fn::Join [Bucket.Arn, "/raw/*"]` exactly
that bucket's `raw/` objects. The handler tests check every call of every test this way, and the served
local runtime checks every invocation's calls (`RoleCheck`, fed by the worker's `call_summary`): a call
AWS would refuse is written to the function's log.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from rtp_cli.local.functions import FunctionSpec
from rtp_cli.local.template import ACCOUNT_ID, Template, TemplateError

ESM = "event source mapping"

# API operations whose IAM action is not `<prefix>:<operation>`. TransactWriteItems/TransactGetItems have
# no action of their own: IAM authorizes each item (Put -> PutItem, ...), handled in `needs_of`.
_ACTION_OF = {
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "HeadBucket"): "s3:ListBucket",
}
_TRANSACT_ITEM_ACTION = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}
# What the Lambda service itself calls with the processor's role to run its SQS event source mapping
# (Lambda developer guide, "Execution role permissions" for Amazon SQS).
ESM_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")


@dataclass(frozen=True)
class ApiCall:
    actor: str  # function name ("ingest", ...) or "<function> [event source mapping]"
    service: str  # botocore service name, e.g. "dynamodb"
    operation: str  # API operation, e.g. "TransactWriteItems"
    params: dict[str, Any] = field(compare=False, hash=False)


@dataclass(frozen=True)
class Need:
    actor: str  # "ingest", "processor", "query", or "processor [event source mapping]"
    action: str
    resource: str
    via: str  # "handler", "event source mapping", or "S3 SSE-KMS for s3:PutObject" etc.

    @property
    def function(self) -> str:
        return self.actor.split(" ", 1)[0]


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]  # resolved
    shown: tuple[str, ...]  # symbolic, for the report
    has_condition: bool

    def matches(self, action: str, resource: str) -> bool:
        if self.has_condition:
            raise AssertionError(
                f"statement {self.actions} has a Condition: teach rtp_cli/local/iam.py to evaluate it"
            )
        return any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in self.actions) and any(
            fnmatch.fnmatchcase(resource, pattern) for pattern in self.resources
        )


def _listify(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def describe(value: Any) -> str:
    """A template value written symbolically: `DataTable.Arn`, `DataRawBucket.Arn + "/raw/*"`."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return f"Ref {value['Ref']}"
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        return ".".join(value["Fn::GetAtt"])
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return (
            f" + {separator!r} + ".join(describe(part) for part in parts)
            if separator
            else " + ".join(describe(part) if isinstance(part, dict) else repr(part) for part in parts)
        )
    return str(value)


def role_statements(resolve: Template, function: FunctionSpec) -> list[Statement]:
    """Every statement of every policy attached to the function's role in the template."""
    documents: list[dict[str, Any]] = []
    role = resolve.resources[function.role_logical_id]
    documents.extend(policy["PolicyDocument"] for policy in role.get("Properties", {}).get("Policies", []))
    for resource in resolve.resources.values():
        if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        roles = resource.get("Properties", {}).get("Roles", [])
        if {"Ref": function.role_logical_id} in roles:
            documents.append(resource["Properties"]["PolicyDocument"])
    statements = []
    for document in documents:
        for statement in _listify(document["Statement"]):
            if "NotAction" in statement or "NotResource" in statement:
                raise AssertionError(f"NotAction/NotResource in {function.name}'s policy: teach the checker")
            raw_resources = _listify(statement["Resource"])
            statements.append(
                Statement(
                    effect=statement["Effect"],
                    actions=tuple(_listify(statement["Action"])),
                    resources=tuple(str(resolve.resolve(resource)) for resource in raw_resources),
                    shown=tuple(describe(resource) for resource in raw_resources),
                    has_condition="Condition" in statement,
                )
            )
    return statements


def is_allowed(statements: Iterable[Statement], action: str, resource: str) -> bool:
    statements = list(statements)
    if any(s.effect == "Deny" and s.matches(action, resource) for s in statements):
        return False
    return any(s.effect == "Allow" and s.matches(action, resource) for s in statements)


def _queue_arn(resolve: Template, url: str) -> str:
    return f"arn:aws:sqs:{resolve.region}:{ACCOUNT_ID}:{urlparse(url).path.rstrip('/').rsplit('/', 1)[-1]}"


def _table_arn(resolve: Template, name: str) -> str:
    return name if name.startswith("arn:") else f"arn:aws:dynamodb:{resolve.region}:{ACCOUNT_ID}:table/{name}"


def _owner(resolve: Template, ref: str) -> dict[str, Any]:
    """The template resource whose Ref is `ref` (a bucket name, a queue URL); {} for one it does not hold."""
    logical_id = next((lid for lid, value in resolve.refs.items() if value == ref), None)
    return resolve.resources[logical_id] if logical_id is not None else {}


def _bucket_key(resolve: Template, bucket: str) -> str | None:
    """The KMS key ARN a bucket encrypts new objects with (its template's default encryption)."""
    encryption = _owner(resolve, bucket).get("Properties", {}).get("BucketEncryption", {})
    for rule in encryption.get("ServerSideEncryptionConfiguration", []):
        default = rule.get("ServerSideEncryptionByDefault", {})
        if default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse") and "KMSMasterKeyID" in default:
            return str(resolve.resolve(default["KMSMasterKeyID"]))
    return None


def _queue_key(resolve: Template, url: str) -> str | None:
    key = _owner(resolve, url).get("Properties", {}).get("KmsMasterKeyId")
    return str(resolve.resolve(key)) if key is not None else None


# The verb, then the table (double-quoted, as the processor writes it) and, for a read of an index, the index.
_PARTIQL = re.compile(
    r'\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM|SELECT\s.*?\sFROM)\s+"([^"]+)"(?:\."([^"]+)")?', re.I | re.S
)


def _partiql_action(resolve: Template, statement: str) -> tuple[str, str]:
    """(dynamodb:PartiQL<Verb>, the table's or index's ARN) of one PartiQL statement: the permission is
    needed "on the table or index" (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ql-iam.html)."""
    match = _PARTIQL.match(statement)
    if match is None:
        raise TemplateError(f"cannot tell which table this PartiQL statement uses: {statement[:80]!r}")
    verb = match.group(1).split()[0].capitalize()
    resource = _table_arn(resolve, match.group(2))
    return f"dynamodb:PartiQL{verb}", resource + (f"/index/{match.group(3)}" if match.group(3) else "")


def needs_of(call: ApiCall, resolve: Template) -> list[Need]:
    """The IAM permissions one recorded call needs: its own action(s) and the KMS use it causes."""
    via = ESM if ESM in call.actor else "handler"
    params, service, operation = call.params, call.service, call.operation
    if service == "dynamodb" and operation in ("TransactWriteItems", "TransactGetItems"):
        return [
            Need(call.actor, _TRANSACT_ITEM_ACTION[kind], _table_arn(resolve, body["TableName"]), via)
            for item in params["TransactItems"]
            for kind, body in item.items()
        ]
    if service == "dynamodb" and operation == "BatchExecuteStatement":
        # No action of its own: each statement needs dynamodb:PartiQL<Verb> on its table.
        # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ql-iam.html
        return [
            Need(call.actor, *_partiql_action(resolve, statement["Statement"]), via)
            for statement in params["Statements"]
        ]
    if service == "dynamodb" and operation in ("BatchGetItem", "BatchWriteItem"):
        # One action per call, authorized on every table the call names (its RequestItems keys).
        return [
            Need(call.actor, f"dynamodb:{operation}", _table_arn(resolve, table), via)
            for table in params["RequestItems"]
        ]
    action = _ACTION_OF.get((service, operation), f"{service}:{operation}")
    needs: list[Need] = []
    if service == "dynamodb":
        resource = _table_arn(resolve, params["TableName"])
        if "IndexName" in params:  # Query/Scan of an index is authorized on the index's ARN
            resource += f"/index/{params['IndexName']}"
    elif service == "s3":
        bucket = params["Bucket"]
        resource = f"arn:aws:s3:::{bucket}/{params['Key']}" if "Key" in params else f"arn:aws:s3:::{bucket}"
        key = _bucket_key(resolve, bucket)
        if key and operation == "PutObject":
            needs.append(Need(call.actor, "kms:GenerateDataKey", key, f"S3 SSE-KMS for s3:{operation}"))
        if key and operation in ("GetObject", "HeadObject"):
            needs.append(Need(call.actor, "kms:Decrypt", key, f"S3 SSE-KMS for s3:{operation}"))
    elif service == "sqs":
        resource = _queue_arn(resolve, params["QueueUrl"])
        key = _queue_key(resolve, params["QueueUrl"])
        if key and operation in ("SendMessage", "SendMessageBatch"):
            needs.append(Need(call.actor, "kms:GenerateDataKey", key, f"SQS SSE-KMS for sqs:{operation}"))
            needs.append(Need(call.actor, "kms:Decrypt", key, f"SQS SSE-KMS for sqs:{operation}"))
        if key and operation == "ReceiveMessage":
            needs.append(Need(call.actor, "kms:Decrypt", key, f"SQS SSE-KMS for sqs:{operation}"))
    else:
        resource = "*"
    return [Need(call.actor, action, resource, via), *needs]


def violations(
    calls: Iterable[ApiCall], resolve: Template, functions: dict[str, FunctionSpec]
) -> list[tuple[Need, ApiCall]]:
    """Every (permission, call) that the calling function's role does not allow."""
    policies = {name: role_statements(resolve, info) for name, info in functions.items()}
    missing = []
    for call in calls:
        for need in needs_of(call, resolve):
            if not is_allowed(policies[need.function], need.action, need.resource):
                missing.append((need, call))
    return missing


def report(missing: list[tuple[Need, ApiCall]]) -> str:
    """One line per refused permission: who, what, on what, why it was needed, which call."""
    return "\n".join(
        f"{need.actor}: {need.action} on {need.resource} ({need.via}; {call.service}.{call.operation})"
        for need, call in missing
    )


class RoleCheck:
    """The served local runtime's check of each invocation: the calls the function's handler made (as the
    worker summarizes them) against the function's role in the template. Answers one line per permission
    the role lacks; the runtime writes them to the function's log."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self._statements: dict[str, list[Statement]] = {}

    def refused(self, function: FunctionSpec, calls: list[dict[str, Any]]) -> list[str]:
        try:
            if function.role_logical_id not in self._statements:
                self._statements[function.role_logical_id] = role_statements(self.template, function)
            statements = self._statements[function.role_logical_id]
            lines = []
            for raw in calls:
                call = ApiCall(function.name, str(raw["service"]), str(raw["operation"]), dict(raw["params"]))
                for need in needs_of(call, self.template):
                    if not is_allowed(statements, need.action, need.resource):
                        lines.append(
                            f"{need.action} on {need.resource} ({need.via}; {call.service}.{call.operation})"
                        )
            return lines
        except (AssertionError, KeyError, TemplateError) as error:  # a shape the checker cannot evaluate
            return [f"(calls not checked against the role: {type(error).__name__}: {error})"]


@dataclass(frozen=True)
class Grant:
    function: str
    action: str
    resource: str  # symbolic
    used_by: str  # how it was used, or why it is not exercised here
    uses: int


def usage(needs: list[Need], resolve: Template, functions: dict[str, FunctionSpec]) -> list[Grant]:
    """Each granted (action, resource) of each function with what used it in the recorded calls."""
    rows = []
    for name, info in sorted(functions.items()):
        mine = [need for need in needs if need.function == name]
        for statement in role_statements(resolve, info):
            if statement.effect != "Allow":
                continue
            for action in statement.actions:
                for pattern, shown in zip(statement.resources, statement.shown, strict=True):
                    single = Statement("Allow", (action,), (pattern,), (shown,), statement.has_condition)
                    used = [need for need in mine if single.matches(need.action, need.resource)]
                    rows.append(Grant(name, action, shown, _used_by(action, used), len(used)))
    return rows


def _used_by(action: str, used: list[Need]) -> str:
    if used:
        return ", ".join(sorted({need.via for need in used}))
    service = action.split(":", 1)[0]
    if service == "xray":
        return "not called by code: Lambda sends trace segments (tracing Active; disabled in tests)"
    if service == "logs":
        return "not called by code: the Lambda runtime writes the function's log streams"
    if service == "kms":
        return "not implied by any recorded call: used by a service on the function's behalf (see notes)"
    return "UNUSED: granted but never called"


def table(rows: list[Grant]) -> str:
    headers = ("function", "action", "resource", "uses", "used by")
    cells = [(row.function, row.action, row.resource, str(row.uses), row.used_by) for row in rows]
    widths = [max(len(headers[i]), *(len(cell[i]) for cell in cells)) for i in range(4)]
    lines = [
        "  ".join(text.ljust(width) for text, width in zip(headers[:4], widths, strict=True))
        + "  "
        + headers[4]
    ]
    lines += [
        "  ".join(text.ljust(width) for text, width in zip(cell[:4], widths, strict=True)) + "  " + cell[4]
        for cell in cells
    ]
    return "\n".join(lines)
