"""Read a synthesized CloudFormation template for the local runtime: what it can honour, and how.

The local runtime never goes through moto's CloudFormation (which reports CREATE_COMPLETE while silently
skipping types and properties). Instead every resource type in the template must appear in `SUPPORT`:

- `create`: the runtime creates it in the local AWS emulation (moto) from its properties, and every
  property of the resource must be one the runtime handles (listed) or knowingly ignores (with a reason).
- `serve`: the runtime implements it itself (the REST API, the functions, the event source mapping).
- `aws-only`: it exists only in AWS (alarms, dashboards, WAF, IAM, ...); the runtime reports it as such.

Anything else (an unknown type, or an unknown property on a type the runtime implements) is refused with
an error naming the resource, so the local environment never claims to be something it is not.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT_ID = "123456789012"  # moto's default account
PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"


class TemplateError(ValueError):
    """The template asks for something the local runtime cannot honour (or cannot be read)."""


@dataclass(frozen=True)
class Support:
    mode: str  # "create" | "serve" | "aws-only"
    reason: str = ""
    # property -> "" (honoured) or the reason it is knowingly not honoured locally
    properties: dict[str, str] = field(default_factory=dict)


_TAGS = {"Tags": ""}
_IAM_REASON = (
    "IAM is not enforced locally: the functions run with the local credentials. Each invocation's calls "
    "are checked against the function's role (a call AWS would refuse is logged), and least privilege is "
    "proven against this template by the handler tests (every AWS call checked against each role)."
)
_POLICY_REASON = (
    "resource policies (TLS-only, deny rules) are AWS-enforced; the local emulation does not evaluate them"
)
_KMS_NOTE = "encryption at rest is recorded on the local resource; the emulation keeps data in memory"

SUPPORT: dict[str, Support] = {
    "AWS::KMS::Key": Support(
        "create",
        properties={
            "Description": "",
            "EnableKeyRotation": "",
            "KeyPolicy": _POLICY_REASON,
            "PendingWindowInDays": "only applies when the key is deleted; local keys vanish with the runtime",
            "KeySpec": "",
            "KeyUsage": "",
            "Enabled": "",
            **_TAGS,
        },
    ),
    "AWS::DynamoDB::Table": Support(
        "create",
        properties={
            "TableName": "",
            "AttributeDefinitions": "",
            "KeySchema": "",
            "BillingMode": "",
            "ProvisionedThroughput": "",
            "GlobalSecondaryIndexes": "",
            "LocalSecondaryIndexes": "",
            "SSESpecification": "",
            "TimeToLiveSpecification": "",
            "PointInTimeRecoverySpecification": "",
            "StreamSpecification": "",
            "DeletionProtectionEnabled": "",
            "TableClass": "",
            "ContributorInsightsSpecification": "an AWS-side metrics feature",
            **_TAGS,
        },
    ),
    "AWS::S3::Bucket": Support(
        "create",
        properties={
            "BucketName": "",
            "BucketEncryption": "",
            "PublicAccessBlockConfiguration": "",
            "LifecycleConfiguration": "",
            "VersioningConfiguration": "",
            "OwnershipControls": "",
            "LoggingConfiguration": "server access log delivery is done by S3 in AWS; not emulated",
            **_TAGS,
        },
    ),
    "AWS::SQS::Queue": Support(
        "create",
        properties={
            "QueueName": "",
            "VisibilityTimeout": "",
            "MessageRetentionPeriod": "",
            "RedrivePolicy": "",
            "RedriveAllowPolicy": "",
            "DelaySeconds": "",
            "MaximumMessageSize": "",
            "ReceiveMessageWaitTimeSeconds": "",
            "FifoQueue": "",
            "ContentBasedDeduplication": "",
            "KmsMasterKeyId": "",
            "KmsDataKeyReusePeriodSeconds": "",
            "SqsManagedSseEnabled": "",
            **_TAGS,
        },
    ),
    "AWS::Logs::LogGroup": Support(
        "create", properties={"LogGroupName": "", "RetentionInDays": "", "KmsKeyId": "", **_TAGS}
    ),
    "AWS::SNS::Topic": Support(
        "create",
        properties={
            "TopicName": "",
            "DisplayName": "",
            "KmsMasterKeyId": "",
            "FifoTopic": "",
            **_TAGS,
        },
    ),
    "AWS::Lambda::Function": Support(
        "serve",
        properties={
            "FunctionName": "",
            "Handler": "",
            "Runtime": "",
            "Code": "",
            "Environment": "",
            "Timeout": "",
            "MemorySize": "reported to the handler in its context; memory is not capped locally",
            "ReservedConcurrentExecutions": "",
            "LoggingConfig": "",
            "Role": _IAM_REASON,
            "TracingConfig": "X-Ray is AWS-only; the Powertools tracer is disabled locally",
            "Architectures": "the code runs on this machine's architecture and Python",
            "KmsKeyArn": "environment-variable encryption is an AWS-side feature",
            "Layers": "the Powertools layer's packages come from this project's pinned virtualenv",
            "Description": "",
            **_TAGS,
        },
    ),
    "AWS::Lambda::EventSourceMapping": Support(
        "serve",
        properties={
            "EventSourceArn": "",
            "FunctionName": "",
            "BatchSize": "",
            "MaximumBatchingWindowInSeconds": "",
            "FunctionResponseTypes": "",
            "ScalingConfig": "",
            "Enabled": "",
            **_TAGS,
        },
    ),
    "AWS::ApiGateway::RestApi": Support(
        "serve",
        properties={
            "Name": "",
            "Description": "",
            "EndpointConfiguration": "served on 127.0.0.1",
            "Policy": _POLICY_REASON,
            "DisableExecuteApiEndpoint": "",
            **_TAGS,
        },
    ),
    "AWS::ApiGateway::Resource": Support(
        "serve", properties={"ParentId": "", "PathPart": "", "RestApiId": ""}
    ),
    "AWS::ApiGateway::Method": Support(
        "serve",
        properties={
            "AuthorizationType": "",
            "HttpMethod": "",
            "Integration": "",
            "RequestModels": "",
            "RequestParameters": "",
            "RequestValidatorId": "",
            "ResourceId": "",
            "RestApiId": "",
            "OperationName": "",
            "MethodResponses": "documentation of responses; proxy integrations pass them through",
        },
    ),
    "AWS::ApiGateway::Model": Support(
        "serve", properties={"ContentType": "", "Name": "", "RestApiId": "", "Schema": "", "Description": ""}
    ),
    "AWS::ApiGateway::RequestValidator": Support(
        "serve",
        properties={"RestApiId": "", "ValidateRequestBody": "", "ValidateRequestParameters": "", "Name": ""},
    ),
    "AWS::ApiGateway::GatewayResponse": Support(
        "serve",
        properties={
            "ResponseTemplates": "",
            "ResponseType": "",
            "RestApiId": "",
            "StatusCode": "",
            "ResponseParameters": "",
        },
    ),
    "AWS::ApiGateway::Deployment": Support("serve", properties={"RestApiId": "", "Description": ""}),
    "AWS::ApiGateway::Stage": Support(
        "serve",
        properties={
            "StageName": "",
            "DeploymentId": "",
            "RestApiId": "",
            "MethodSettings": "",
            "AccessLogSetting": "",
            "TracingEnabled": "X-Ray is AWS-only",
            "Description": "",
            **_TAGS,
        },
    ),
    # Exists only in AWS: reported, not emulated.
    "AWS::CloudWatch::Alarm": Support("aws-only", "CloudWatch alarms evaluate AWS metrics"),
    "AWS::CloudWatch::Dashboard": Support("aws-only", "CloudWatch dashboards are an AWS console feature"),
    "AWS::WAFv2::WebACL": Support("aws-only", "WAF filters traffic at AWS's edge"),
    "AWS::WAFv2::WebACLAssociation": Support("aws-only", "WAF filters traffic at AWS's edge"),
    "AWS::IAM::Role": Support("aws-only", _IAM_REASON),
    "AWS::IAM::Policy": Support("aws-only", _IAM_REASON),
    "AWS::IAM::ManagedPolicy": Support("aws-only", _IAM_REASON),
    "AWS::Lambda::Permission": Support("aws-only", _IAM_REASON),
    "AWS::S3::BucketPolicy": Support("aws-only", _POLICY_REASON),
    "AWS::SQS::QueuePolicy": Support("aws-only", _POLICY_REASON),
    "AWS::SNS::TopicPolicy": Support("aws-only", _POLICY_REASON),
    "AWS::SNS::Subscription": Support("aws-only", "alarm e-mail is delivered by SNS in AWS"),
    "AWS::Lambda::Version": Support("aws-only", "versions and aliases run the same code locally"),
    "AWS::Lambda::Alias": Support(
        "aws-only", "versions and aliases run the same code locally (provisioned concurrency is AWS-only)"
    ),
    "AWS::CDK::Metadata": Support("aws-only", "CDK usage metadata"),
    "Custom::ApiGatewayAccountLogging": Support(
        "aws-only",
        "ensures the API Gateway account's CloudWatch Logs role in AWS (stack/api_gateway_account.py); "
        "the local API writes its access log without one",
    ),
    "Custom::S3AutoDeleteObjects": Support(
        "aws-only",
        "empties the buckets when the stack is deleted; `rtp destroy --env local` drops everything anyway",
    ),
}


@dataclass(frozen=True)
class Note:
    logical_id: str
    type: str
    message: str


class Template:
    """A parsed template plus a resolver for intrinsic functions against local physical ids."""

    def __init__(self, document: dict[str, Any], path: Path | None, stack_name: str, region: str) -> None:
        self.document = document
        self.path = path
        self.stack_name = stack_name
        self.region = region
        self.resources: dict[str, dict[str, Any]] = document.get("Resources", {})
        self.parameters: dict[str, Any] = document.get("Parameters", {})
        # logical id -> Ref value; (logical id, attribute) -> GetAtt value
        self.refs: dict[str, str] = {}
        self.attrs: dict[tuple[str, str], str] = {}

    @classmethod
    def load(cls, path: Path, stack_name: str, region: str) -> Template:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise TemplateError(f"cannot read template {path}: {error}") from error
        return cls(document, path, stack_name, region)

    # ---- what the template holds -------------------------------------------------------------
    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {lid: res for lid, res in self.resources.items() if res.get("Type") == resource_type}

    def props(self, logical_id: str) -> dict[str, Any]:
        props: dict[str, Any] = self.resources[logical_id].get("Properties", {})
        return props

    def check_supported(self) -> list[Note]:
        """Raise TemplateError naming every resource/property the runtime cannot honour; return notes."""
        problems: list[str] = []
        notes: list[Note] = []
        for logical_id, resource in self.resources.items():
            resource_type = resource.get("Type", "?")
            support = SUPPORT.get(resource_type)
            if support is None:
                problems.append(f"{logical_id} ({resource_type}): resource type not implemented locally")
                continue
            if support.mode == "aws-only":
                notes.append(Note(logical_id, resource_type, f"AWS-only: {support.reason}"))
                continue
            for prop in resource.get("Properties", {}):
                if prop not in support.properties:
                    problems.append(
                        f"{logical_id} ({resource_type}): property {prop} is not implemented locally"
                    )
                elif support.properties[prop]:
                    notes.append(Note(logical_id, resource_type, f"{prop}: {support.properties[prop]}"))
        problems.extend(self._check_semantics())
        if problems:
            raise TemplateError("the local runtime cannot honour this template:\n  " + "\n  ".join(problems))
        return notes

    def _check_semantics(self) -> list[str]:
        problems: list[str] = []
        for lid, _ in self.of_type("AWS::ApiGateway::Method").items():
            props = self.props(lid)
            auth = props.get("AuthorizationType", "NONE")
            if auth not in ("AWS_IAM", "NONE"):
                problems.append(f"{lid}: AuthorizationType {auth} is not implemented locally (AWS_IAM, NONE)")
            integration = props.get("Integration", {})
            if integration.get("Type") != "AWS_PROXY":
                problems.append(
                    f"{lid}: integration type {integration.get('Type')} is not implemented locally"
                )
        for lid, _ in self.of_type("AWS::Lambda::EventSourceMapping").items():
            arn = self.props(lid).get("EventSourceArn")
            if not (isinstance(arn, dict) and "Fn::GetAtt" in arn):
                problems.append(f"{lid}: only SQS queues of this template are implemented as event sources")
            else:
                target = arn["Fn::GetAtt"][0]
                if self.resources.get(target, {}).get("Type") != "AWS::SQS::Queue":
                    problems.append(f"{lid}: event source {target} is not an SQS queue of this template")
        return problems

    # ---- physical names ------------------------------------------------------------------------
    def physical_name(self, logical_id: str, max_len: int = 128, lower: bool = False) -> str:
        """CloudFormation-style generated name, stable for a given stack and logical id."""
        digest = hashlib.sha256(f"{self.stack_name}/{logical_id}".encode()).hexdigest()[:12].upper()
        base = f"{self.stack_name}-{logical_id}"
        name = f"{base[: max_len - 13]}-{digest}"
        return name.lower() if lower else name

    # ---- intrinsic functions -------------------------------------------------------------------
    def pseudo(self, name: str) -> str | None:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT_ID}:stack/{self.stack_name}/x",
            "AWS::NoValue": None,
        }.get(name)

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = self._intrinsics().get(key)
            if handler is not None:
                return handler(arg)
        return {key: self.resolve(item) for key, item in value.items()}

    def _intrinsics(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Join": lambda arg: str(arg[0]).join(str(self.resolve(p)) for p in self.resolve(arg[1])),
            "Fn::Sub": self._sub,
            "Fn::Select": lambda arg: self.resolve(arg[1])[int(self.resolve(arg[0]))],
            "Fn::Split": lambda arg: str(self.resolve(arg[1])).split(arg[0]),
        }

    def _ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.refs:
            return self.refs[name]
        if name in self.parameters:
            return self.parameters[name].get("Default", "")
        raise TemplateError(f"Ref {name}: not a resource the local runtime created")

    def _get_att(self, arg: Any) -> str:
        logical_id, attribute = (arg.split(".", 1) if isinstance(arg, str) else arg)[:2]
        try:
            return self.attrs[(logical_id, attribute)]
        except KeyError:
            raise TemplateError(
                f"Fn::GetAtt {logical_id}.{attribute}: not available locally "
                f"({self.resources.get(logical_id, {}).get('Type', 'unknown resource')})"
            ) from None

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                return self._get_att(name)
            return str(self._ref(name))

        return re.sub(r"\$\{([^}!][^}]*)\}", replace, text)

    def referenced_logical_id(self, value: Any) -> str | None:
        """The logical id a Ref/GetAtt (possibly inside Join/Sub) points at, first found."""
        if isinstance(value, dict):
            if "Ref" in value and isinstance(value["Ref"], str) and value["Ref"] in self.resources:
                return str(value["Ref"])
            if "Fn::GetAtt" in value:
                att = value["Fn::GetAtt"]
                return str(att[0] if isinstance(att, list) else att.split(".")[0])
            for item in value.values():
                found = self.referenced_logical_id(item)
                if found:
                    return found
        if isinstance(value, list):
            for item in value:
                found = self.referenced_logical_id(item)
                if found:
                    return found
        return None

    def lambda_refs_in(self, value: Any) -> list[str]:
        found: list[str] = []
        if isinstance(value, dict):
            if "Fn::GetAtt" in value:
                att = value["Fn::GetAtt"]
                lid = att[0] if isinstance(att, list) else att.split(".")[0]
                if self.resources.get(lid, {}).get("Type") == "AWS::Lambda::Function":
                    found.append(lid)
            for item in value.values():
                found.extend(self.lambda_refs_in(item))
        elif isinstance(value, list):
            for item in value:
                found.extend(self.lambda_refs_in(item))
        return found
