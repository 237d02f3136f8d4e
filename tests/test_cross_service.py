"""AWS's rules *between* services, as gates over every environment's template.

The other gates check each resource against our own picture of it. A deploy can still fail, or succeed and
silently not work, on a rule that spans two services: who may publish to a topic, which account setting a
stage needs, which key policy a service must find, in what order CloudFormation must create things. Each
row below encodes one such rule, cites the AWS page (or public report) it comes from, applies to every
environment where the interaction exists, and has a negative test: remove the grant from a copy of the
template and the row must report it.

Every resource type in a template must be claimed by a row or listed in NO_CROSS_SERVICE_RULE with the
reason it has none: a new kind of resource fails the suite until someone writes its row.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from stack.api import OVERSIZE_BODY_RULE, decimal_above
from stack.api_gateway_account import RESOURCE_TYPE as ACCOUNT_LOGGING
from stack.config import load_config
from tests.conftest import ENVIRONMENTS
from tests.template_tools import as_list, props, references, resources, role_statements, target

Template = dict[str, Any]
Problems = list[str]


# --- reading templates ------------------------------------------------------------------------------
def text(value: Any) -> str:
    """A template value as one string: `${AWS::Region}` for pseudo parameters, `${Id}` for a Ref and
    `${Id.Attr}` for a GetAtt, joins concatenated. Enough to compare ARNs and names symbolically."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return "${" + str(value["Ref"]) + "}"
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return str(separator).join(text(part) for part in parts)
    return json.dumps(value, sort_keys=True)


ACCOUNT_ROOT = "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"


def statements(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(s) for s in as_list(document.get("Statement", []))]


def services(statement: Mapping[str, Any]) -> set[str]:
    principal = statement.get("Principal", {})
    return {text(s) for s in as_list(principal.get("Service", []))} if isinstance(principal, dict) else set()


def aws_principals(statement: Mapping[str, Any]) -> set[str]:
    principal = statement.get("Principal", {})
    return {text(s) for s in as_list(principal.get("AWS", []))} if isinstance(principal, dict) else set()


def grants(statement: Mapping[str, Any], *actions: str) -> bool:
    """Does an Allow statement cover every one of `actions` (wildcards in the statement honoured)?"""
    patterns = [str(a).lower() for a in as_list(statement.get("Action", []))]
    return statement.get("Effect") == "Allow" and all(
        any(fnmatch.fnmatchcase(action.lower(), pattern) for pattern in patterns) for action in actions
    )


def on(statement: Mapping[str, Any], logical_id: str) -> bool:
    """Is `logical_id` among the statement's resources (or is the resource `*`)?"""
    resource = statement.get("Resource", [])
    return resource == "*" or "*" in as_list(resource) or logical_id in references(resource)


def condition(statement: Mapping[str, Any], operator: str, key: str) -> str | None:
    value = statement.get("Condition", {}).get(operator, {}).get(key)
    return None if value is None else text(value)


def key_statements(template: Template, key_value: Any) -> list[dict[str, Any]]:
    key = target(key_value)
    if key is None or template["Resources"].get(key, {}).get("Type") != "AWS::KMS::Key":
        return []
    return statements(props(template["Resources"][key])["KeyPolicy"])


def delegates_to_account(key_policy: list[dict[str, Any]]) -> bool:
    return any(grants(s, "kms:*") and ACCOUNT_ROOT in aws_principals(s) for s in key_policy)


def function_role(template: Template, function_id: str) -> str:
    role = target(props(template["Resources"][function_id])["Role"])
    assert role is not None, f"{function_id}: its Role is not a role of this template"
    return role


def alarm_topics(template: Template) -> set[str]:
    return {
        topic
        for alarm in resources(template, "AWS::CloudWatch::Alarm").values()
        for field in ("AlarmActions", "OKActions", "InsufficientDataActions")
        for action in props(alarm).get(field, [])
        if (topic := target(action)) is not None
    }


def topic_policy(template: Template, topic: str) -> tuple[str | None, list[dict[str, Any]]]:
    for policy_id, policy in resources(template, "AWS::SNS::TopicPolicy").items():
        if topic in {target(t) for t in props(policy)["Topics"]}:
            return policy_id, statements(props(policy)["PolicyDocument"])
    return None, []


def bucket_policy(template: Template, bucket: str) -> tuple[str | None, list[dict[str, Any]]]:
    for policy_id, policy in resources(template, "AWS::S3::BucketPolicy").items():
        if target(props(policy)["Bucket"]) == bucket:
            return policy_id, statements(props(policy)["PolicyDocument"])
    return None, []


def depends_on(resource: Mapping[str, Any]) -> list[str]:
    return [str(d) for d in as_list(resource.get("DependsOn", []))]


def drop_statements(document: dict[str, Any], unwanted: Callable[[dict[str, Any]], bool]) -> None:
    document["Statement"] = [s for s in as_list(document["Statement"]) if not unwanted(s)]


# --- the rows ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    name: str
    source: str  # the AWS page (or public report) this row encodes
    covers: frozenset[str]  # the resource types whose cross-service rule this is
    applies: Callable[[Template], bool]
    check: Callable[[Template], Problems]
    breaks: tuple[Callable[[Template], None], ...]  # each removes the grant from a copy of the template

    def __str__(self) -> str:
        return self.name


def _alarm_topic_policy(template: Template) -> Problems:
    problems = []
    for topic in sorted(alarm_topics(template)):
        policy_id, policy = topic_policy(template, topic)
        allowed = [
            s
            for s in policy
            if grants(s, "sns:Publish")
            and "cloudwatch.amazonaws.com" in services(s)
            and on(s, topic)
            and condition(s, "StringEquals", "aws:SourceAccount") == "${AWS::AccountId}"
            and condition(s, "ArnLike", "aws:SourceArn")
            == "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:*"
        ]
        if not allowed:
            problems.append(
                f"{topic}: the topic policy {policy_id} does not let cloudwatch.amazonaws.com publish "
                "(scoped to this account's alarms in this region); alarms would notify nobody"
            )
        if not any(
            s.get("Effect") == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for s in policy
        ):
            problems.append(f"{topic}: the TLS-only Deny is gone from {policy_id}")
    return problems


def _break_alarm_topic_policy(template: Template) -> None:
    for policy in resources(template, "AWS::SNS::TopicPolicy").values():
        drop_statements(props(policy)["PolicyDocument"], lambda s: "cloudwatch.amazonaws.com" in services(s))


def _alarm_topic_key(template: Template) -> Problems:
    problems = []
    for topic in sorted(alarm_topics(template)):
        key = props(template["Resources"][topic]).get("KmsMasterKeyId")
        if key is None:
            continue
        policy = key_statements(template, key)
        if not policy:
            problems.append(
                f"{topic} is encrypted with {text(key)}, not a customer managed key of this stack: the AWS "
                "managed alias/aws/sns key cannot be granted to CloudWatch"
            )
        elif not any(
            grants(s, "kms:Decrypt", "kms:GenerateDataKey")
            and "cloudwatch.amazonaws.com" in services(s)
            # Documented without a condition; one CloudWatch's call does not meet drops alarms silently.
            and "Condition" not in s
            for s in policy
        ):
            problems.append(
                f"{topic}: its key does not let cloudwatch.amazonaws.com use it (Decrypt, GenerateDataKey*, "
                "unconditioned as documented)"
            )
    return problems


def _condition_alarm_topic_key(template: Template) -> None:
    for key in resources(template, "AWS::KMS::Key").values():
        for statement in props(key)["KeyPolicy"]["Statement"]:
            if "cloudwatch.amazonaws.com" in services(statement):
                statement["Condition"] = {"StringEquals": {"aws:SourceAccount": "${AWS::AccountId}"}}


def _break_alarm_topic_key(template: Template) -> None:
    for key in resources(template, "AWS::KMS::Key").values():
        drop_statements(props(key)["KeyPolicy"], lambda s: "cloudwatch.amazonaws.com" in services(s))


def _break_topic_with_aws_managed_key(template: Template) -> None:
    for topic in resources(template, "AWS::SNS::Topic").values():
        props(topic)["KmsMasterKeyId"] = "alias/aws/sns"


LOGS_KEY_ACTIONS = (
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:GenerateDataKey",
    "kms:DescribeKey",
)


def _logs_to_kms(template: Template) -> Problems:
    problems = []
    service = "logs.${AWS::Region}.amazonaws.com"
    for group_id, group in resources(template, "AWS::Logs::LogGroup").items():
        key = props(group).get("KmsKeyId")
        if key is None:
            continue
        name = text(props(group).get("LogGroupName", "${" + group_id + "}"))
        group_arn = f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:{name}"
        usable = [
            s
            for s in key_statements(template, key)
            if service in services(s)
            and grants(s, *LOGS_KEY_ACTIONS)
            and (pattern := condition(s, "ArnLike", "kms:EncryptionContext:aws:logs:arn")
                 or condition(s, "ArnEquals", "kms:EncryptionContext:aws:logs:arn")) is not None
            and fnmatch.fnmatchcase(group_arn, pattern)
        ]  # fmt: skip
        if not usable:
            problems.append(
                f"{group_id}: its key does not let {service} use it for this group (with the "
                "kms:EncryptionContext:aws:logs:arn condition); CloudWatch Logs refuses to create it"
            )
    return problems


def _break_logs_to_kms(template: Template) -> None:
    for key in resources(template, "AWS::KMS::Key").values():
        drop_statements(props(key)["KeyPolicy"], lambda s: any(v.startswith("logs.") for v in services(s)))


ESM_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")


def _esm_to_queue(template: Template) -> Problems:
    problems = []
    for mapping_id, mapping in resources(template, "AWS::Lambda::EventSourceMapping").items():
        queue = target(props(mapping)["EventSourceArn"])
        function = target(props(mapping)["FunctionName"])
        assert queue and function
        role = function_role(template, function)
        granted = role_statements(template, role)
        for action in ESM_ACTIONS:
            if not any(grants(s, action) and on(s, queue) for s in granted):
                problems.append(f"{mapping_id}: {role} may not {action} on {queue}")
        key = props(template["Resources"][queue]).get("KmsMasterKeyId")
        key_id = target(key) if key is not None else None
        if key_id and not any(grants(s, "kms:Decrypt") and on(s, key_id) for s in granted):
            problems.append(f"{mapping_id}: {role} may not kms:Decrypt with {key_id}, the key of {queue}")
        policies = {
            pid
            for pid, policy in resources(template, "AWS::IAM::Policy").items()
            if role in {target(r) for r in props(policy).get("Roles", [])}
        }
        if policies and not policies <= set(depends_on(mapping)):
            problems.append(
                f"{mapping_id}: not ordered after {sorted(policies)}; it fails to create without them"
            )
    return problems


def _break_esm_to_queue(template: Template) -> None:
    for policy in resources(template, "AWS::IAM::Policy").values():
        for statement in as_list(props(policy)["PolicyDocument"]["Statement"]):
            statement["Action"] = [a for a in as_list(statement["Action"]) if a != "sqs:ReceiveMessage"]


def _break_esm_order(template: Template) -> None:
    for mapping in resources(template, "AWS::Lambda::EventSourceMapping").values():
        mapping.pop("DependsOn", None)


def _logging_stages(template: Template) -> dict[str, dict[str, Any]]:
    return {
        sid: stage
        for sid, stage in resources(template, "AWS::ApiGateway::Stage").items()
        if "AccessLogSetting" in props(stage)
        or any(s.get("LoggingLevel", "OFF") != "OFF" for s in props(stage).get("MethodSettings", []))
    }


def _account_role_before_stage(template: Template) -> Problems:
    problems = []
    ensured = set(resources(template, ACCOUNT_LOGGING))
    if resources(template, "AWS::ApiGateway::Account"):
        problems.append(
            "AWS::ApiGateway::Account makes this stack own the account's single logging role: environments "
            "would overwrite it and a stack delete would break every other API's logging"
        )
    for stage_id, stage in _logging_stages(template).items():
        if not ensured & set(depends_on(stage)):
            problems.append(
                f"{stage_id} logs but is not ordered after a {ACCOUNT_LOGGING}: in an account where the API "
                "Gateway CloudWatch role was never set it fails: 'CloudWatch Logs role ARN must be set in "
                "account settings to enable logging'"
            )
    return problems


def _break_account_role_before_stage(template: Template) -> None:
    ensured = set(resources(template, ACCOUNT_LOGGING))
    for stage in resources(template, "AWS::ApiGateway::Stage").values():
        stage["DependsOn"] = [d for d in depends_on(stage) if d not in ensured]


def _execution_log_group(template: Template) -> Problems:
    problems = []
    for stage_id, stage in resources(template, "AWS::ApiGateway::Stage").items():
        levels = {s.get("LoggingLevel", "OFF") for s in props(stage).get("MethodSettings", [])}
        if levels <= {"OFF"}:
            continue
        expected = f"API-Gateway-Execution-Logs_{text(props(stage)['RestApiId'])}/{props(stage)['StageName']}"
        groups = [
            gid
            for gid, group in resources(template, "AWS::Logs::LogGroup").items()
            if text(props(group).get("LogGroupName", "")) == expected
        ]
        if not groups:
            problems.append(
                f"{stage_id}: no stack-owned {expected}; API Gateway would create it, outliving the stack"
            )
        elif not set(groups) <= set(depends_on(stage)):
            problems.append(
                f"{stage_id}: not ordered after {groups}; API Gateway could create the group first"
            )
    return problems


def _break_execution_log_group(template: Template) -> None:
    for group in resources(template, "AWS::Logs::LogGroup").values():
        props(group).pop("LogGroupName", None)


def _server_access_logs(template: Template) -> Problems:
    problems = []
    for bucket_id, bucket in resources(template, "AWS::S3::Bucket").items():
        logging = props(bucket).get("LoggingConfiguration")
        if not logging:
            continue
        target_id = target(logging["DestinationBucketName"])
        assert target_id is not None
        prefix = logging.get("LogFilePrefix", "")
        _, policy = bucket_policy(template, target_id)
        delivery = [
            s
            for s in policy
            if grants(s, "s3:PutObject")
            and "logging.s3.amazonaws.com" in services(s)
            and any(text(r) == f"${{{target_id}.Arn}}/{prefix}*" for r in as_list(s["Resource"]))
            and condition(s, "StringEquals", "aws:SourceAccount") == "${AWS::AccountId}"
            and condition(s, "ArnLike", "aws:SourceArn") == f"${{{bucket_id}.Arn}}"
        ]
        if not delivery:
            problems.append(
                f"{bucket_id}: {target_id}'s policy does not let logging.s3.amazonaws.com deliver its logs"
            )
        encryption = props(template["Resources"][target_id]).get("BucketEncryption", {})
        algorithms = {
            rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
            for rule in encryption.get("ServerSideEncryptionConfiguration", [])
        }
        if algorithms != {"AES256"}:
            problems.append(
                f"{target_id}: default encryption {sorted(algorithms)}; log delivery supports SSE-S3 only"
            )
    return problems


def _break_server_access_log_policy(template: Template) -> None:
    for policy in resources(template, "AWS::S3::BucketPolicy").values():
        drop_statements(props(policy)["PolicyDocument"], lambda s: "logging.s3.amazonaws.com" in services(s))


def _break_server_access_log_encryption(template: Template) -> None:
    for bucket in resources(template, "AWS::S3::Bucket").values():
        for rule in props(bucket)["BucketEncryption"]["ServerSideEncryptionConfiguration"]:
            rule["ServerSideEncryptionByDefault"] = {"SSEAlgorithm": "aws:kms"}


def _lambda_environment_key(template: Template) -> Problems:
    problems = []
    for function_id, function in resources(template, "AWS::Lambda::Function").items():
        key = props(function).get("KmsKeyArn")
        if key is None:
            continue
        if not delegates_to_account(key_statements(template, key)):
            problems.append(
                f"{function_id}: its environment key {text(key)} does not let the account's IAM policies use "
                "it; Lambda cannot create the grant its role decrypts with"
            )
        if target(props(function)["Role"]) not in resources(template, "AWS::IAM::Role"):
            problems.append(
                f"{function_id}: its role is not this stack's; a replaced role loses the key grant"
            )
    return problems


def _break_key_delegation(template: Template) -> None:
    for key in resources(template, "AWS::KMS::Key").values():
        drop_statements(props(key)["KeyPolicy"], lambda s: ACCOUNT_ROOT in aws_principals(s))


def _break_function_role(template: Template) -> None:
    for function in resources(template, "AWS::Lambda::Function").values():
        if "KmsKeyArn" in props(function):
            props(function)["Role"] = "arn:aws:iam::123456789012:role/made-by-hand"


def _key_delegation(template: Template) -> Problems:
    """DynamoDB, S3, SQS and Lambda use the CMK on behalf of principals that IAM authorizes."""
    return [
        f"{key_id}: its policy does not delegate to the account (IAM); services using it for the table, "
        "bucket and queues would be refused"
        for key_id, key in resources(template, "AWS::KMS::Key").items()
        if not delegates_to_account(statements(props(key)["KeyPolicy"]))
    ]


def _data_keys_for_callers(template: Template) -> Problems:
    """S3 SSE-KMS and SQS SSE-KMS use the caller's permissions on the key."""
    problems = []
    buckets = resources(template, "AWS::S3::Bucket")
    queues = resources(template, "AWS::SQS::Queue")
    for role_id in resources(template, "AWS::IAM::Role"):
        granted = role_statements(template, role_id)
        for bucket_id, bucket in buckets.items():
            rule = props(bucket)["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
            key = target(rule["ServerSideEncryptionByDefault"].get("KMSMasterKeyID"))
            if key is None:
                continue
            for action, needed in (("s3:PutObject", "kms:GenerateDataKey"), ("s3:GetObject", "kms:Decrypt")):
                if any(grants(s, action) and on(s, bucket_id) for s in granted) and not any(
                    grants(s, needed) and on(s, key) for s in granted
                ):
                    problems.append(f"{role_id}: {action} on {bucket_id} (SSE-KMS) needs {needed} on {key}")
        for queue_id, queue in queues.items():
            key = target(props(queue).get("KmsMasterKeyId"))
            if key is None:
                continue
            sends = any(grants(s, "sqs:SendMessage") and on(s, queue_id) for s in granted)
            for needed in ("kms:GenerateDataKey", "kms:Decrypt") if sends else ():
                if not any(grants(s, needed) and on(s, key) for s in granted):
                    problems.append(
                        f"{role_id}: sqs:SendMessage to {queue_id} (SSE-KMS) needs {needed} on {key}"
                    )
    return problems


def _break_data_keys_for_callers(template: Template) -> None:
    for policy in resources(template, "AWS::IAM::Policy").values():
        for statement in as_list(props(policy)["PolicyDocument"]["Statement"]):
            statement["Action"] = [a for a in as_list(statement["Action"]) if a != "kms:GenerateDataKey"]


def _waf_on_stage(template: Template) -> Problems:
    problems = []
    stages = set(resources(template, "AWS::ApiGateway::Stage"))
    acls = resources(template, "AWS::WAFv2::WebACL")
    for acl_id, acl in acls.items():
        if props(acl)["Scope"] != "REGIONAL":
            problems.append(
                f"{acl_id}: an API Gateway stage takes a REGIONAL web ACL, not {props(acl)['Scope']}"
            )
        associated = [
            a
            for a in resources(template, "AWS::WAFv2::WebACLAssociation").values()
            if target(props(a)["WebACLArn"]) == acl_id
            and stages & references(props(a)["ResourceArn"])
            and text(props(a)["ResourceArn"]).startswith(
                "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/"
            )
        ]
        if not associated:
            problems.append(f"{acl_id}: not associated with the API's stage ARN; it filters nothing")
    return problems


def _break_waf_on_stage(template: Template) -> None:
    for association_id in list(resources(template, "AWS::WAFv2::WebACLAssociation")):
        del template["Resources"][association_id]


def _waf_answers_oversize_bodies(template: Template) -> Problems:
    problems = []
    for acl_id, acl in resources(template, "AWS::WAFv2::WebACL").items():
        rules = [rule for rule in props(acl)["Rules"] if rule["Name"] == OVERSIZE_BODY_RULE]
        if len(rules) != 1:
            problems.append(
                f"{acl_id}: no {OVERSIZE_BODY_RULE}: an oversize body becomes Lambda's invoke refusal, a 500"
            )
            continue
        rule = rules[0]
        response = rule.get("Action", {}).get("Block", {}).get("CustomResponse", {})
        body = props(acl).get("CustomResponseBodies", {}).get(response.get("CustomResponseBodyKey"), {})
        if response.get("ResponseCode") != 413 or body.get("ContentType") != "APPLICATION_JSON":
            problems.append(f"{acl_id}: {OVERSIZE_BODY_RULE} does not answer 413 with a JSON body")
        elif set(json.loads(body["Content"])["error"]) != {"code", "message", "details", "requestId"}:
            problems.append(f"{acl_id}: the 413 body is not the API's error shape")
        match = rule["Statement"].get("RegexMatchStatement", {})
        if match.get("FieldToMatch") != {"SingleHeader": {"Name": "content-length"}}:
            problems.append(f"{acl_id}: {OVERSIZE_BODY_RULE} does not read Content-Length")
        elif not any(
            match.get("RegexString") == decimal_above(load_config(env).api.max_body_bytes)
            for env in ENVIRONMENTS
        ):
            problems.append(f"{acl_id}: {OVERSIZE_BODY_RULE}'s limit is no environment's api.max_body_bytes")
    return problems


def _break_waf_oversize_rule(template: Template) -> None:
    for acl in resources(template, "AWS::WAFv2::WebACL").values():
        props(acl)["Rules"] = [r for r in props(acl)["Rules"] if r["Name"] != OVERSIZE_BODY_RULE]


def _break_waf_oversize_status(template: Template) -> None:
    for acl in resources(template, "AWS::WAFv2::WebACL").values():
        for rule in props(acl)["Rules"]:
            if rule["Name"] == OVERSIZE_BODY_RULE:
                rule["Action"]["Block"]["CustomResponse"]["ResponseCode"] = 500


def _dead_letter_queue(template: Template) -> Problems:
    problems = []
    queues = resources(template, "AWS::SQS::Queue")
    for queue_id, queue in queues.items():
        redrive = props(queue).get("RedrivePolicy")
        if not redrive:
            continue
        dlq = target(redrive["deadLetterTargetArn"])
        if dlq not in queues:
            problems.append(f"{queue_id}: its dead-letter target is not a queue of this stack")
            continue
        own = props(queue).get("MessageRetentionPeriod", 345600)
        kept = props(queues[dlq]).get("MessageRetentionPeriod", 345600)
        if kept <= own:
            problems.append(
                f"{dlq} keeps messages {kept}s, not longer than {queue_id} ({own}s): expiry counts from the "
                "original enqueue time, so dead letters would expire early"
            )
        if bool(props(queues[dlq]).get("FifoQueue")) != bool(props(queue).get("FifoQueue")):
            problems.append(f"{dlq} and {queue_id} must both be standard (or both FIFO)")
    return problems


def _break_dead_letter_queue(template: Template) -> None:
    for queue in resources(template, "AWS::SQS::Queue").values():
        if "RedrivePolicy" not in props(queue):
            props(queue)["MessageRetentionPeriod"] = 60


def _queue_visibility(template: Template) -> Problems:
    problems = []
    for mapping_id, mapping in resources(template, "AWS::Lambda::EventSourceMapping").items():
        queue = template["Resources"][str(target(props(mapping)["EventSourceArn"]))]
        function = template["Resources"][str(target(props(mapping)["FunctionName"]))]
        needed = 6 * props(function).get("Timeout", 3) + props(mapping).get(
            "MaximumBatchingWindowInSeconds", 0
        )
        if props(queue).get("VisibilityTimeout", 30) < needed:
            problems.append(
                f"{mapping_id}: the queue's visibility timeout is below 6 x the function timeout + window"
            )
    return problems


def _break_queue_visibility(template: Template) -> None:
    for queue in resources(template, "AWS::SQS::Queue").values():
        props(queue)["VisibilityTimeout"] = 30


def _api_invokes_functions(template: Template) -> Problems:
    problems = []
    api_ids = set(resources(template, "AWS::ApiGateway::RestApi"))
    permissions = [
        p
        for p in resources(template, "AWS::Lambda::Permission").values()
        if props(p)["Principal"] == "apigateway.amazonaws.com"
        and props(p)["Action"] == "lambda:InvokeFunction"
    ]
    for method_id, method in resources(template, "AWS::ApiGateway::Method").items():
        integration = props(method)["Integration"]
        invoked = {
            ref
            for ref in references(integration.get("Uri"))
            if template["Resources"].get(ref, {}).get("Type")
            in ("AWS::Lambda::Function", "AWS::Lambda::Alias")
        }
        for function in invoked:
            if not any(
                target(props(p)["FunctionName"]) == function
                and api_ids & references(props(p).get("SourceArn"))
                for p in permissions
            ):
                problems.append(
                    f"{method_id}: apigateway.amazonaws.com may not invoke {function} from this API"
                )
    return problems


def _break_api_invokes_functions(template: Template) -> None:
    for permission_id in list(resources(template, "AWS::Lambda::Permission")):
        del template["Resources"][permission_id]


def _function_logs(template: Template) -> Problems:
    problems = []
    for function_id, function in resources(template, "AWS::Lambda::Function").items():
        group = target(props(function).get("LoggingConfig", {}).get("LogGroup"))
        granted = role_statements(template, function_role(template, function_id))
        if group is None or not any(
            grants(s, "logs:CreateLogStream", "logs:PutLogEvents") and on(s, group) for s in granted
        ):
            problems.append(
                f"{function_id}: its role may not write to its log group {group}; its logs are lost"
            )
        tracing = props(function).get("TracingConfig", {}).get("Mode") == "Active"
        if tracing and not any(
            grants(s, "xray:PutTraceSegments", "xray:PutTelemetryRecords") for s in granted
        ):
            problems.append(f"{function_id}: active tracing, but its role may not send traces to X-Ray")
    return problems


def _break_function_logs(template: Template) -> None:
    for role in resources(template, "AWS::IAM::Role").values():
        for policy in props(role).get("Policies", []):
            drop_statements(policy["PolicyDocument"], lambda s: grants(s, "logs:PutLogEvents"))
    for policy in resources(template, "AWS::IAM::Policy").values():
        drop_statements(props(policy)["PolicyDocument"], lambda s: grants(s, "logs:PutLogEvents"))


def _break_tracing(template: Template) -> None:
    for policy in resources(template, "AWS::IAM::Policy").values():
        drop_statements(props(policy)["PolicyDocument"], lambda s: grants(s, "xray:PutTraceSegments"))


def _account_logging_provider(template: Template) -> Problems:
    """Our provider calls what the CloudFormation handler of AWS::ApiGateway::Account needs to create one
    (its registry schema, shipped with cfn-lint), on the account setting and the role it passes."""
    # Imported here: this module is in the synth tier, and cfn-lint's import (~1.7 s: sympy, networkx)
    # would otherwise be paid by every fast-tier run before `stack.api` skips the module.
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER  # type: ignore[import-untyped]

    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", "AWS::ApiGateway::Account").schema
    needed = set(schema["handlers"]["create"]["permissions"])
    problems = []
    for resource_id, resource in resources(template, ACCOUNT_LOGGING).items():
        function = target(props(resource)["ServiceToken"])
        assert function is not None
        granted = role_statements(template, function_role(template, function))
        missing = sorted(a for a in needed if not any(grants(s, a) for s in granted))
        if missing:
            problems.append(f"{resource_id}: its provider may not {missing}")
        passes = [s for s in granted if grants(s, "iam:PassRole")]
        if any(
            condition(s, "StringEquals", "iam:PassedToService") != "apigateway.amazonaws.com" for s in passes
        ):
            problems.append(f"{resource_id}: iam:PassRole is not limited to apigateway.amazonaws.com")
    return problems


def _break_account_logging_provider(template: Template) -> None:
    for role in resources(template, "AWS::IAM::Role").values():
        for policy in props(role).get("Policies", []):
            drop_statements(policy["PolicyDocument"], lambda s: grants(s, "iam:PassRole"))


def _auto_delete_buckets(template: Template) -> Problems:
    problems = []
    for resource_id, resource in resources(template, "Custom::S3AutoDeleteObjects").items():
        bucket = target(props(resource)["BucketName"])
        assert bucket is not None
        provider = target(props(resource)["ServiceToken"])
        role = function_role(template, str(provider))
        policy_id, policy = bucket_policy(template, bucket)
        actions = ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:ListBucket", "s3:ListBucketVersions")
        if not any(grants(s, *actions) and f"${{{role}.Arn}}" in aws_principals(s) for s in policy):
            problems.append(
                f"{resource_id}: {bucket}'s policy does not let the provider empty it; delete fails"
            )
        if policy_id not in depends_on(resource):
            problems.append(
                f"{resource_id}: not ordered after {policy_id}; on delete the grant could go first"
            )
    return problems


def _break_auto_delete_buckets(template: Template) -> None:
    for policy in resources(template, "AWS::S3::BucketPolicy").values():
        drop_statements(props(policy)["PolicyDocument"], lambda s: grants(s, "s3:DeleteObject"))


def _has(*types: str) -> Callable[[Template], bool]:
    return lambda template: any(resources(template, t) for t in types)


LOGS_KMS = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html"
RULES = (
    Rule(
        "CloudWatch alarm -> SNS topic policy",
        "https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html ; "
        "https://repost.aws/knowledge-center/cloudwatch-receive-sns-for-alarm-trigger",
        frozenset({"AWS::CloudWatch::Alarm", "AWS::SNS::TopicPolicy"}),
        _has("AWS::CloudWatch::Alarm"),
        _alarm_topic_policy,
        (_break_alarm_topic_policy,),
    ),
    Rule(
        "CloudWatch alarm -> SNS topic key (customer managed, CloudWatch may use it)",
        "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services ; "
        "https://repost.aws/knowledge-center/cloudwatch-configure-alarm-sns",
        frozenset({"AWS::SNS::Topic", "AWS::SNS::Subscription"}),
        _has("AWS::SNS::Topic"),
        _alarm_topic_key,
        (_break_alarm_topic_key, _break_topic_with_aws_managed_key, _condition_alarm_topic_key),
    ),
    Rule(
        "CloudWatch Logs -> KMS key of each encrypted log group",
        LOGS_KMS,
        frozenset({"AWS::Logs::LogGroup"}),
        _has("AWS::Logs::LogGroup"),
        _logs_to_kms,
        (_break_logs_to_kms,),
    ),
    Rule(
        "Lambda event source mapping -> SQS queue and its key, through the function role",
        "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html ; "
        "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html",
        frozenset({"AWS::Lambda::EventSourceMapping"}),
        _has("AWS::Lambda::EventSourceMapping"),
        _esm_to_queue,
        (_break_esm_to_queue, _break_esm_order),
    ),
    Rule(
        "Lambda event source mapping -> queue visibility timeout (6 x function timeout + batching window)",
        "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html#events-sqs-queueconfig",
        frozenset({"AWS::Lambda::EventSourceMapping"}),
        _has("AWS::Lambda::EventSourceMapping"),
        _queue_visibility,
        (_break_queue_visibility,),
    ),
    Rule(
        "API Gateway logging -> the account's CloudWatch role, ensured before the stage",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-logging.html ; "
        "aws-samples/amazon-bedrock-knowledgebase-slackbot#6, seasketch/geoprocessing#375, sst#1556, "
        "aws-samples/serverless-patterns#620",
        frozenset({"AWS::ApiGateway::Stage", ACCOUNT_LOGGING}),
        _has("AWS::ApiGateway::Stage"),
        _account_role_before_stage,
        (_break_account_role_before_stage,),
    ),
    Rule(
        "API Gateway execution logs -> a stack-owned API-Gateway-Execution-Logs_{api}/{stage} group",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-logging.html",
        frozenset({"AWS::ApiGateway::Stage"}),
        _has("AWS::ApiGateway::Stage"),
        _execution_log_group,
        (_break_execution_log_group,),
    ),
    Rule(
        "Account-logging provider -> what AWS::ApiGateway::Account's handler needs (PassRole to API GW only)",
        "https://github.com/aws-cloudformation/aws-cloudformation-resource-providers-apigateway/blob/master/"
        "aws-apigateway-account/aws-apigateway-account.json (handlers.create.permissions)",
        frozenset({ACCOUNT_LOGGING}),
        _has(ACCOUNT_LOGGING),
        _account_logging_provider,
        (_break_account_logging_provider,),
    ),
    Rule(
        "S3 server access logs -> log bucket (policy for logging.s3.amazonaws.com, SSE-S3 only)",
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html",
        frozenset({"AWS::S3::Bucket", "AWS::S3::BucketPolicy"}),
        _has("AWS::S3::Bucket"),
        _server_access_logs,
        (_break_server_access_log_policy, _break_server_access_log_encryption),
    ),
    Rule(
        "S3 and SQS encrypted with the CMK -> the caller's role may use the key",
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html#require-sse-kms ; "
        "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html",
        frozenset({"AWS::IAM::Role", "AWS::IAM::Policy", "AWS::SQS::Queue"}),
        _has("AWS::IAM::Role"),
        _data_keys_for_callers,
        (_break_data_keys_for_callers,),
    ),
    Rule(
        "DynamoDB, S3, SQS, Lambda -> the CMK's policy delegates to the account's IAM policies",
        "https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html#key-policy-default-allow-root-enable-iam",
        frozenset({"AWS::KMS::Key", "AWS::DynamoDB::Table"}),
        _has("AWS::KMS::Key"),
        _key_delegation,
        (_break_key_delegation,),
    ),
    Rule(
        "Lambda environment encryption -> key usable through IAM, role owned by the stack (Lambda's grant)",
        "https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars-encryption.html ; "
        "https://repost.aws/knowledge-center/lambda-kmsaccessdeniedexception-errors",
        frozenset({"AWS::Lambda::Function"}),
        _has("AWS::Lambda::Function"),
        _lambda_environment_key,
        (_break_key_delegation, _break_function_role),
    ),
    Rule(
        "Lambda -> its own log group and X-Ray, through its role",
        "https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-loggroups.html ; "
        "https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html",
        frozenset({"AWS::Lambda::Function", "AWS::IAM::Role", "AWS::IAM::Policy"}),
        _has("AWS::Lambda::Function"),
        _function_logs,
        (_break_function_logs, _break_tracing),
    ),
    Rule(
        "API Gateway -> Lambda invoke permission for every integrated function or alias",
        "https://docs.aws.amazon.com/lambda/latest/dg/services-apigateway.html",
        frozenset(
            {
                "AWS::ApiGateway::Method",
                "AWS::Lambda::Permission",
                "AWS::Lambda::Alias",
                "AWS::Lambda::Version",
                "AWS::ApiGateway::RestApi",
            }
        ),
        _has("AWS::ApiGateway::Method"),
        _api_invokes_functions,
        (_break_api_invokes_functions,),
    ),
    Rule(
        "WAF -> API Gateway stage (REGIONAL web ACL associated with the stage ARN)",
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-control-access-aws-waf.html",
        frozenset({"AWS::WAFv2::WebACL", "AWS::WAFv2::WebACLAssociation"}),
        _has("AWS::WAFv2::WebACL"),
        _waf_on_stage,
        (_break_waf_on_stage,),
    ),
    Rule(
        "WAF -> oversize body answered 413 before API Gateway invokes Lambda (a 500 otherwise)",
        "https://docs.aws.amazon.com/lambda/latest/dg/services-apigateway-errors.html ; "
        "https://docs.aws.amazon.com/waf/latest/developerguide/customizing-the-response-for-blocked-requests.html",
        frozenset({"AWS::WAFv2::WebACL"}),
        _has("AWS::WAFv2::WebACL"),
        _waf_answers_oversize_bodies,
        (_break_waf_oversize_rule, _break_waf_oversize_status),
    ),
    Rule(
        "SQS -> dead-letter queue (keeps messages longer, same queue type)",
        "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html",
        frozenset({"AWS::SQS::Queue", "AWS::SQS::QueuePolicy"}),
        _has("AWS::SQS::Queue"),
        _dead_letter_queue,
        (_break_dead_letter_queue,),
    ),
    Rule(
        "CDK bucket auto-delete provider -> the bucket's policy, ordered before it",
        "https://docs.aws.amazon.com/cdk/api/v2/docs/aws-cdk-lib.aws_s3.Bucket.html (autoDeleteObjects)",
        frozenset({"Custom::S3AutoDeleteObjects"}),
        _has("Custom::S3AutoDeleteObjects"),
        _auto_delete_buckets,
        (_break_auto_delete_buckets,),
    ),
)

# Types that take part in no rule between services, and why.
NO_CROSS_SERVICE_RULE = {
    "AWS::CDK::Metadata": "CDK usage metadata; nothing runs",
    "AWS::CloudWatch::Dashboard": "rendered in the console with the viewer's own credentials",
    "AWS::ApiGateway::Resource": "API configuration inside API Gateway",
    "AWS::ApiGateway::Model": "API configuration inside API Gateway",
    "AWS::ApiGateway::RequestValidator": "API configuration inside API Gateway",
    "AWS::ApiGateway::GatewayResponse": "API configuration inside API Gateway",
    "AWS::ApiGateway::Deployment": "API configuration inside API Gateway",
    "AWS::IAM::ManagedPolicy": "producer/reader policies: customers attach them to their own principals",
}


# --- the gates --------------------------------------------------------------------------------------
@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("rule", RULES, ids=str)
def test_cross_service_rule_holds(env: str, rule: Rule, templates: Mapping[str, Template]) -> None:
    template = templates[env]
    if not rule.applies(template):
        pytest.skip(f"{env} has no {sorted(rule.covers)} interaction for this rule")  # e.g. WAF off in dev
    assert rule.check(template) == [], f"{rule.name}\nsource: {rule.source}"


def test_every_rule_applies_somewhere(templates: Mapping[str, Template]) -> None:
    """No stale rows: each applies to at least one shipped environment (so its holds-test really ran)."""
    idle = [rule.name for rule in RULES if not any(rule.applies(templates[env]) for env in ENVIRONMENTS)]
    assert idle == []


@pytest.mark.parametrize(
    ("rule", "index"), [(rule, i) for rule in RULES for i in range(len(rule.breaks))], ids=lambda v: str(v)
)
def test_cross_service_rule_fails_without_its_grant(
    rule: Rule, index: int, templates: Mapping[str, Template]
) -> None:
    env = next(env for env in ("prod", *ENVIRONMENTS) if rule.applies(templates[env]))
    broken = copy.deepcopy(templates[env])
    rule.breaks[index](broken)
    assert broken != templates[env], "the break changed nothing"
    assert rule.check(broken), (
        f"{rule.name}: removing the grant went unnoticed ({rule.breaks[index].__name__})"
    )


def uncovered(template: Template) -> set[str]:
    claimed = {t for rule in RULES for t in rule.covers} | set(NO_CROSS_SERVICE_RULE)
    return {resource["Type"] for resource in template["Resources"].values()} - claimed


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_resource_type_has_a_row(env: str, templates: Mapping[str, Template]) -> None:
    assert uncovered(templates[env]) == set(), "add a cross-service row (or a reason it has none)"


def test_a_new_resource_type_without_a_row_is_refused(templates: Mapping[str, Template]) -> None:
    template = copy.deepcopy(templates["dev"])
    template["Resources"]["Firehose"] = {"Type": "AWS::KinesisFirehose::DeliveryStream", "Properties": {}}
    assert uncovered(template) == {"AWS::KinesisFirehose::DeliveryStream"}


def test_every_row_cites_its_source() -> None:
    for rule in RULES:
        assert re.search(r"https://\S+\.\S+/\S+", rule.source), rule.name  # a page, not just a name
