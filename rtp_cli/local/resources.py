"""Create the template's data resources in the local AWS emulation, from their template properties.

Each `AWS::*` type the runtime `create`s (see `template.SUPPORT`) has one function here that maps its
CloudFormation properties onto the service API, the way CloudFormation's resource handlers would. The
resolved physical ids are registered on the `Template` so later `Ref`/`Fn::GetAtt` (function environment
variables, outputs, the event source mapping) resolve to the local resources.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rtp_cli.local.template import ACCOUNT_ID, Template, TemplateError

Clients = Callable[[str], Any]


def _tags(props: dict[str, Any]) -> list[dict[str, str]]:
    return [{"Key": str(t["Key"]), "Value": str(t["Value"])} for t in props.get("Tags", [])]


def provision(template: Template, client: Clients) -> dict[str, str]:
    """Create every `create` resource; return logical id -> physical id (also registered on template)."""
    created: dict[str, str] = {}
    # The REST API's id is known before anything exists, and a log group may be named after it (API
    # Gateway's execution-log group, `API-Gateway-Execution-Logs_{restApiId}/{stage}`).
    for logical_id in template.of_type("AWS::ApiGateway::RestApi"):
        _register_rest_api(template, logical_id)
    order = [
        ("AWS::KMS::Key", _kms_key),
        ("AWS::Logs::LogGroup", _log_group),
        ("AWS::DynamoDB::Table", _table),
        ("AWS::S3::Bucket", _bucket),
        ("AWS::SQS::Queue", _queues),
        ("AWS::SNS::Topic", _topic),
    ]
    for resource_type, create in order:
        resources = template.of_type(resource_type)
        if not resources:
            continue
        if create is _queues:
            created.update(_queues(template, client, resources))
            continue
        for logical_id in resources:
            try:
                created[logical_id] = create(template, client, logical_id)  # type: ignore[operator]
            except TemplateError:
                raise
            except Exception as error:
                raise TemplateError(
                    f"{logical_id} ({resource_type}): could not be created locally: {error}"
                ) from error
    _register_non_created(template)
    return created


def _kms_key(template: Template, client: Clients, logical_id: str) -> str:
    props = template.resolve(template.props(logical_id))
    kms = client("kms")
    args: dict[str, Any] = {"Description": props.get("Description", f"{template.stack_name} {logical_id}")}
    if props.get("KeySpec"):
        args["KeySpec"] = props["KeySpec"]
    if props.get("KeyUsage"):
        args["KeyUsage"] = props["KeyUsage"]
    if _tags(props):
        args["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in _tags(props)]
    key = kms.create_key(**args)["KeyMetadata"]
    if props.get("EnableKeyRotation"):
        kms.enable_key_rotation(KeyId=key["KeyId"])
    if props.get("Enabled") is False:
        kms.disable_key(KeyId=key["KeyId"])
    template.refs[logical_id] = key["KeyId"]
    template.attrs[(logical_id, "Arn")] = key["Arn"]
    template.attrs[(logical_id, "KeyId")] = key["KeyId"]
    return str(key["KeyId"])


def _log_group(template: Template, client: Clients, logical_id: str) -> str:
    props = template.resolve(template.props(logical_id))
    logs = client("logs")
    name = props.get("LogGroupName") or template.physical_name(logical_id, 512)
    args: dict[str, Any] = {"logGroupName": name}
    if props.get("KmsKeyId"):
        args["kmsKeyId"] = props["KmsKeyId"]
    if _tags(props):
        args["tags"] = {t["Key"]: t["Value"] for t in _tags(props)}
    logs.create_log_group(**args)
    if props.get("RetentionInDays"):
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
    template.refs[logical_id] = name
    template.attrs[(logical_id, "Arn")] = f"arn:aws:logs:{template.region}:{ACCOUNT_ID}:log-group:{name}:*"
    return str(name)


def _table(template: Template, client: Clients, logical_id: str) -> str:
    props = template.resolve(template.props(logical_id))
    ddb = client("dynamodb")
    name = props.get("TableName") or template.physical_name(logical_id, 255)
    args: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    if args["BillingMode"] == "PROVISIONED":
        args["ProvisionedThroughput"] = props.get(
            "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        )
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "StreamSpecification", "TableClass"):
        if key in props:
            args[key] = props[key]
    if "DeletionProtectionEnabled" in props:
        args["DeletionProtectionEnabled"] = bool(props["DeletionProtectionEnabled"])
    sse = props.get("SSESpecification")
    if sse:
        spec: dict[str, Any] = {"Enabled": bool(sse.get("SSEEnabled"))}
        if sse.get("SSEType"):
            spec["SSEType"] = sse["SSEType"]
        if sse.get("KMSMasterKeyId"):
            spec["KMSMasterKeyId"] = sse["KMSMasterKeyId"]
        args["SSESpecification"] = spec
    if _tags(props):
        args["Tags"] = _tags(props)
    table = ddb.create_table(**args)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        ddb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )
    pitr = props.get("PointInTimeRecoverySpecification")
    if pitr and pitr.get("PointInTimeRecoveryEnabled"):
        ddb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    template.refs[logical_id] = name
    template.attrs[(logical_id, "Arn")] = table["TableArn"]
    if table.get("LatestStreamArn"):
        template.attrs[(logical_id, "StreamArn")] = table["LatestStreamArn"]
    return str(name)


def _bucket(template: Template, client: Clients, logical_id: str) -> str:
    props = template.resolve(template.props(logical_id))
    s3 = client("s3")
    name = props.get("BucketName") or template.physical_name(logical_id, 63, lower=True)
    if template.region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": template.region})
    if props.get("OwnershipControls"):
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=props["OwnershipControls"])
    if props.get("PublicAccessBlockConfiguration"):
        s3.put_public_access_block(
            Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
        )
    encryption = props.get("BucketEncryption")
    if encryption:
        rules = []
        for rule in encryption["ServerSideEncryptionConfiguration"]:
            default = dict(rule.get("ServerSideEncryptionByDefault", {}))
            if "KMSMasterKeyID" in default:
                default["KMSMasterKeyID"] = default.pop("KMSMasterKeyID")
            out: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": default}
            if "BucketKeyEnabled" in rule:
                out["BucketKeyEnabled"] = bool(rule["BucketKeyEnabled"])
            rules.append(out)
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if props.get("VersioningConfiguration"):
        s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]}
        )
    lifecycle = props.get("LifecycleConfiguration")
    if lifecycle:
        s3.put_bucket_lifecycle_configuration(
            Bucket=name, LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in lifecycle["Rules"]]}
        )
    if _tags(props):
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags(props)})
    template.refs[logical_id] = name
    template.attrs[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"
    template.attrs[(logical_id, "DomainName")] = f"{name}.s3.amazonaws.com"
    template.attrs[(logical_id, "RegionalDomainName")] = f"{name}.s3.{template.region}.amazonaws.com"
    return str(name)


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation lifecycle rule -> S3 API lifecycle rule."""
    out: dict[str, Any] = {"Status": rule["Status"]}
    if "Id" in rule:
        out["ID"] = rule["Id"]
    out["Filter"] = {"Prefix": rule.get("Prefix", "")}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "NoncurrentVersionExpiration" in rule:
        out["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        }
    if "AbortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        }
    if "Transitions" in rule:
        out["Transitions"] = [
            {"Days": int(step["TransitionInDays"]), "StorageClass": step["StorageClass"]}
            for step in rule["Transitions"]
        ]
    unknown = set(rule) - {
        "Id",
        "Status",
        "Prefix",
        "ExpirationInDays",
        "Transitions",
        "NoncurrentVersionExpiration",
        "AbortIncompleteMultipartUpload",
    }
    if unknown:
        raise TemplateError(f"lifecycle rule {rule.get('Id', '')}: {sorted(unknown)} not implemented locally")
    return out


_QUEUE_ATTRIBUTES = {
    "VisibilityTimeout": "VisibilityTimeout",
    "MessageRetentionPeriod": "MessageRetentionPeriod",
    "DelaySeconds": "DelaySeconds",
    "MaximumMessageSize": "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds": "ReceiveMessageWaitTimeSeconds",
    "FifoQueue": "FifoQueue",
    "ContentBasedDeduplication": "ContentBasedDeduplication",
    "KmsMasterKeyId": "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds": "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled": "SqsManagedSseEnabled",
}


def _queues(template: Template, client: Clients, queues: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Queues in dependency order: a dead-letter queue before the queue whose redrive policy names it."""
    created: dict[str, str] = {}
    pending = dict(queues)
    while pending:
        progressed = False
        for logical_id in list(pending):
            redrive = template.props(logical_id).get("RedrivePolicy")
            target = template.referenced_logical_id(redrive) if redrive else None
            if target and target in pending:
                continue
            try:
                created[logical_id] = _queue(template, client, logical_id)
            except TemplateError:
                raise
            except Exception as error:
                raise TemplateError(
                    f"{logical_id} (AWS::SQS::Queue): could not be created locally: {error}"
                ) from error
            del pending[logical_id]
            progressed = True
        if not progressed:
            raise TemplateError(f"queues {sorted(pending)}: circular redrive policies")
    return created


def _queue(template: Template, client: Clients, logical_id: str) -> str:
    props = template.resolve(template.props(logical_id))
    sqs = client("sqs")
    fifo = str(props.get("FifoQueue", "false")).lower() == "true"
    name = props.get("QueueName") or template.physical_name(logical_id, 80 - (5 if fifo else 0))
    if fifo and not name.endswith(".fifo"):
        name += ".fifo"
    attributes = {
        api: _attr(props[cfn]) for cfn, api in _QUEUE_ATTRIBUTES.items() if cfn in props and props[cfn] != ""
    }
    if props.get("RedrivePolicy"):
        redrive = props["RedrivePolicy"]
        attributes["RedrivePolicy"] = json.dumps(
            {
                "deadLetterTargetArn": redrive["deadLetterTargetArn"],
                "maxReceiveCount": int(redrive["maxReceiveCount"]),
            }
        )
    if props.get("RedriveAllowPolicy"):
        attributes["RedriveAllowPolicy"] = json.dumps(props["RedriveAllowPolicy"])
    args: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
    if _tags(props):
        args["tags"] = {t["Key"]: t["Value"] for t in _tags(props)}
    url = sqs.create_queue(**args)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    template.refs[logical_id] = url
    template.attrs[(logical_id, "Arn")] = arn
    template.attrs[(logical_id, "QueueName")] = name
    template.attrs[(logical_id, "QueueUrl")] = url
    return str(url)


def _attr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _topic(template: Template, client: Clients, logical_id: str) -> str:
    props = template.resolve(template.props(logical_id))
    sns = client("sns")
    name = props.get("TopicName") or template.physical_name(logical_id, 256)
    attributes = {}
    if props.get("DisplayName"):
        attributes["DisplayName"] = str(props["DisplayName"])
    if props.get("KmsMasterKeyId"):
        attributes["KmsMasterKeyId"] = str(props["KmsMasterKeyId"])
    if props.get("FifoTopic"):
        attributes["FifoTopic"] = "true"
    args: dict[str, Any] = {"Name": name, "Attributes": attributes}
    if _tags(props):
        args["Tags"] = _tags(props)
    arn = sns.create_topic(**args)["TopicArn"]
    template.refs[logical_id] = arn
    template.attrs[(logical_id, "TopicArn")] = arn
    template.attrs[(logical_id, "TopicName")] = name
    return str(arn)


def _register_non_created(template: Template) -> None:
    """Refs to resources the runtime serves or reports (functions, API, dashboards...) for outputs/env."""
    region = template.region
    for logical_id, resource in template.resources.items():
        if logical_id in template.refs:
            continue
        resource_type = resource.get("Type", "")
        props = resource.get("Properties", {})
        if resource_type == "AWS::Lambda::Function":
            name = props.get("FunctionName") or template.physical_name(logical_id, 64)
            template.refs[logical_id] = name
            template.attrs[(logical_id, "Arn")] = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"
        elif resource_type == "AWS::ApiGateway::RestApi":
            _register_rest_api(template, logical_id)
        elif resource_type == "AWS::ApiGateway::Stage":
            template.refs[logical_id] = str(props.get("StageName", "prod"))
        elif resource_type == "AWS::ApiGateway::Resource":
            template.refs[logical_id] = logical_id
            template.attrs[(logical_id, "ResourceId")] = logical_id
        elif resource_type == "AWS::IAM::Role":
            template.refs[logical_id] = template.physical_name(logical_id, 64)
            template.attrs[(logical_id, "Arn")] = (
                f"arn:aws:iam::{ACCOUNT_ID}:role/{template.refs[logical_id]}"
            )
        elif resource_type == "AWS::IAM::ManagedPolicy":
            template.refs[logical_id] = (
                f"arn:aws:iam::{ACCOUNT_ID}:policy/{template.physical_name(logical_id, 128)}"
            )
        elif resource_type == "AWS::CloudWatch::Dashboard":
            template.refs[logical_id] = props.get("DashboardName") or template.physical_name(logical_id)
        else:
            template.refs[logical_id] = logical_id


def _register_rest_api(template: Template, logical_id: str) -> None:
    api_id = template.physical_name(logical_id).lower()[-10:]
    template.refs[logical_id] = api_id
    template.attrs[(logical_id, "RootResourceId")] = "root"
    template.attrs[(logical_id, "RestApiId")] = api_id
