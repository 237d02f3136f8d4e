"""CloudFormation custom resource: make sure API Gateway may write CloudWatch logs in this account and region,
before the stage that logs is created.

Why: a stage with access or execution logging fails to create ("CloudWatch Logs role ARN must be set in
account settings to enable logging") where the account-level `cloudwatchRoleArn` of API Gateway was never
set. It is one value per account and region, shared by every API there
(https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-logging.html, "Permissions for
CloudWatch logging"; reports: aws-samples/amazon-bedrock-knowledgebase-slackbot#6,
seasketch/geoprocessing#375, sst#1556, aws-samples/serverless-patterns#620).

Create / Update:
- GetAccount. If `cloudwatchRoleArn` names a role that exists and trusts apigateway.amazonaws.com, leave it
  alone: it belongs to whoever set it (an account baseline, another stack) and works.
- Otherwise create, or reuse, ONE well-known role (its name comes from the resource properties), trusting
  apigateway.amazonaws.com with the AWS managed policy AmazonAPIGatewayPushToCloudWatchLogs, and set it with
  UpdateAccount (patch /cloudwatchRoleArn). Right after IAM changes, UpdateAccount refuses the role with
  BadRequestException "The role ARN does not have required permissions ..." until IAM propagates
  (aws/aws-cdk#2194, aws-cloudformation/rain#163, tmobile/jazz-installer#597): retried with backoff, within
  a bounded budget, then a clear failure.
Delete: nothing. Other APIs in the account log through the same setting; removing it would break them.

CloudFormation invokes this function asynchronously and waits for the answer on the pre-signed
`ResponseURL` (https://docs.aws.amazon.com/lambda/latest/dg/services-cloudformation.html), so every outcome,
failures included, is sent there before the function's deadline. Standard library and boto3 only (both in
the Lambda runtime); nothing from this repository.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

LOGGER = logging.getLogger(__name__)

PHYSICAL_RESOURCE_ID = "apigateway-account-cloudwatch-role"
APIGATEWAY_PRINCIPAL = "apigateway.amazonaws.com"
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": APIGATEWAY_PRINCIPAL}, "Action": "sts:AssumeRole"}
    ],
}
# The start of both wordings API Gateway has used for a role it cannot assume (yet).
PROPAGATION_ERROR = "The role ARN does not have required permissions"
PROPAGATION_BUDGET_SECONDS = 120.0  # IAM propagation takes seconds; two minutes means something else is wrong
RESPONSE_MARGIN_SECONDS = 15.0  # kept back from the Lambda timeout to answer CloudFormation in any case
MAX_REASON_CHARS = 1000  # CloudFormation accepts a response of at most 4096 bytes
# botocore waits 60 s to connect and 60 s to read by default
# (https://botocore.amazonaws.com/v1/documentation/api/latest/reference/config.html), per attempt: one hung
# endpoint could outlast this function's 3-minute timeout, and a function that times out never answers
# CloudFormation (the stack then waits out the resource's 5-minute ServiceTimeout for nothing). These are
# small control-plane calls: a few seconds each, three attempts (standard mode: backoff with jitter,
# https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html) bound a call to under a minute.
CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 3}
)

Clients = Callable[[str], Any]
Sender = Callable[[str, Mapping[str, Any]], None]


class SetupError(Exception):
    """A failure CloudFormation should show as is: the message is the stack event's reason."""


@dataclass(frozen=True)
class Outcome:
    role_arn: str
    action: str  # "kept" (a working role was already set) or "set" (this resource set it)


def ensure_logging_role(
    apigateway: Any,
    iam: Any,
    *,
    role_name: str,
    policy_arn: str,
    description: str,
    tags: list[dict[str, str]],
    deadline: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    """Leave a working account role alone; otherwise create or reuse `role_name` and set it."""
    current = apigateway.get_account().get("cloudwatchRoleArn")
    if current and _is_working_role(iam, current):
        LOGGER.info("cloudwatchRoleArn is %s, which exists and trusts API Gateway: left alone", current)
        return Outcome(current, "kept")
    LOGGER.info("cloudwatchRoleArn is %r: setting %s", current, role_name)
    role_arn = _ensure_role(iam, role_name, policy_arn, description, tags)
    _set_account_role(apigateway, role_arn, deadline, sleep, clock)
    return Outcome(role_arn, "set")


def trusts_apigateway(document: Any) -> bool:
    """Does a role's trust policy let apigateway.amazonaws.com assume it? (IAM returns the document
    URL-encoded; boto3 usually decodes it already.) A pure function of any JSON value: never raises.

    True when an Allow statement grants sts:AssumeRole (Action or NotAction; IAM action names are
    case-insensitive and take `*`/`?` wildcards) to the service principal by name, and no Deny statement
    takes it back (an explicit deny wins). A wildcard principal (`"*"`, `{"AWS": "*"}`) does not count:
    a role anyone may assume is replaced, not kept. Conditions are not evaluated.
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
    rtp doctor (rtp_cli/doctor.py) gives its verdict with this same function."""
    if isinstance(document, str):
        try:
            document = json.loads(urllib.parse.unquote(document))
        except (ValueError, RecursionError):
            return False
    if not isinstance(document, dict):
        return False
    statements = [item for item in _as_list(document.get("Statement", [])) if isinstance(item, dict)]
    assume = [item for item in statements if _grants_assume_role(item)]
    allowed = any(item.get("Effect") == "Allow" and _names_apigateway(item) for item in assume)
    denied = any(
        item.get("Effect") == "Deny" and (_names_apigateway(item) or _names_everyone(item)) for item in assume
    )
    return allowed and not denied


def _grants_assume_role(statement: dict[str, Any]) -> bool:
    """Does the statement's Action (or NotAction) cover sts:AssumeRole? IAM matches action names
    case-insensitively, with `*` (any run of characters) and `?` (one character) as the only wildcards."""

    def matches(pattern: Any) -> bool:
        if not isinstance(pattern, str):
            return False
        expression = "".join(
            ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern.lower()
        )
        return re.fullmatch(expression, "sts:assumerole") is not None

    if "NotAction" in statement:
        return not any(matches(pattern) for pattern in _as_list(statement["NotAction"]))
    return any(matches(pattern) for pattern in _as_list(statement.get("Action", [])))


def _names_apigateway(statement: dict[str, Any]) -> bool:
    principal = statement.get("Principal")
    return isinstance(principal, dict) and APIGATEWAY_PRINCIPAL in _as_list(principal.get("Service", []))


def _names_everyone(statement: dict[str, Any]) -> bool:
    principal = statement.get("Principal")
    return principal == "*" or (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS", [])))


def _is_working_role(iam: Any, role_arn: str) -> bool:
    if ":role/" not in role_arn:
        return False
    name = role_arn.rsplit("/", 1)[-1]
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except ClientError as error:
        if _code(error) == "NoSuchEntity":
            LOGGER.info("cloudwatchRoleArn %s names a role that no longer exists", role_arn)
            return False
        raise
    # Same name but another ARN (path, account): the setting does not point at this role.
    return bool(role["Arn"] == role_arn and trusts_apigateway(role["AssumeRolePolicyDocument"]))


def _ensure_role(iam: Any, name: str, policy_arn: str, description: str, tags: list[dict[str, str]]) -> str:
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except ClientError as error:
        if _code(error) != "NoSuchEntity":
            raise
        try:
            role = iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
                Description=description,
                Tags=tags,
            )["Role"]
            LOGGER.info("created %s", role["Arn"])
        except ClientError as create_error:
            if _code(create_error) != "EntityAlreadyExists":
                raise
            role = iam.get_role(RoleName=name)["Role"]  # another stack created it a moment ago
    if not trusts_apigateway(role["AssumeRolePolicyDocument"]):
        raise SetupError(
            f"IAM role {name} exists but does not trust {APIGATEWAY_PRINCIPAL}, so API Gateway cannot use "
            "it for logging. Add that service to its trust policy (or delete the role and deploy again)."
        )
    iam.attach_role_policy(RoleName=name, PolicyArn=policy_arn)  # idempotent
    return str(role["Arn"])


def _set_account_role(
    apigateway: Any,
    role_arn: str,
    deadline: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> None:
    started, attempt = clock(), 0
    while True:
        try:
            apigateway.update_account(
                patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": role_arn}]
            )
            LOGGER.info("cloudwatchRoleArn set to %s (attempt %d)", role_arn, attempt + 1)
            return
        except ClientError as error:
            if _code(error) != "BadRequestException" or PROPAGATION_ERROR not in _message(error):
                raise
            delay = min(2.0**attempt, 10.0)
            if clock() + delay > deadline:
                raise SetupError(
                    f"API Gateway still refuses {role_arn} after {clock() - started:.0f}s and {attempt + 1} "
                    f"attempts ({_message(error)}). IAM changes normally propagate within seconds: deploy "
                    "again; if it persists, check that the role trusts apigateway.amazonaws.com and has "
                    "AmazonAPIGatewayPushToCloudWatchLogs attached."
                ) from error
            LOGGER.info("IAM has not propagated %s yet; retrying in %.0fs", role_arn, delay)
            sleep(delay)
            attempt += 1


def on_event(
    event: Mapping[str, Any],
    context: Any,
    *,
    clients: Clients | None = None,
    send: Sender | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """The Lambda entry point. Always answers CloudFormation; never raises for a failed setup."""
    logging.getLogger().setLevel(logging.INFO)  # here, not at import: rtp doctor imports trusts_apigateway
    clients = clients or _client
    send = send or send_response
    request = event.get("RequestType")
    physical_id = str(event.get("PhysicalResourceId") or PHYSICAL_RESOURCE_ID)
    try:
        if request == "Delete":
            LOGGER.info("Delete: the account's logging role and setting stay (other APIs use them)")
            send(event["ResponseURL"], response_body(event, "SUCCESS", physical_id, "left in place"))
            return
        if request not in ("Create", "Update"):
            raise SetupError(f"unknown RequestType {request!r}")
        properties = event["ResourceProperties"]
        budget = context.get_remaining_time_in_millis() / 1000 - RESPONSE_MARGIN_SECONDS
        outcome = ensure_logging_role(
            clients("apigateway"),
            clients("iam"),
            role_name=str(properties["RoleName"]),
            policy_arn=str(properties["PolicyArn"]),
            description=str(properties.get("Description", "")),
            tags=list(properties.get("RoleTags", [])),
            deadline=clock() + min(PROPAGATION_BUDGET_SECONDS, budget),
            sleep=sleep,
            clock=clock,
        )
        body = response_body(
            event,
            "SUCCESS",
            physical_id,
            f"cloudwatchRoleArn {outcome.action}: {outcome.role_arn}",
            {"RoleArn": outcome.role_arn, "Action": outcome.action},
        )
    except Exception as error:  # every failure must reach CloudFormation, or the stack waits for nothing
        LOGGER.exception("%s failed", request)
        body = response_body(event, "FAILED", physical_id, f"{type(error).__name__}: {error}")
    send(event["ResponseURL"], body)


def response_body(
    event: Mapping[str, Any],
    status: str,
    physical_id: str,
    reason: str,
    data: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The custom resource response object CloudFormation expects on the response URL."""
    return {
        "Status": status,
        "Reason": reason[:MAX_REASON_CHARS],
        "PhysicalResourceId": physical_id,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": False,
        "Data": dict(data or {}),
    }


def send_response(url: str, body: Mapping[str, Any]) -> None:
    """PUT the response to CloudFormation's pre-signed S3 URL (HTTPS only; empty Content-Type, as the
    signature expects)."""
    if urllib.parse.urlparse(url).scheme != "https":
        raise ValueError(f"refusing to send the response to a non-HTTPS URL: {url[:60]}")
    data = json.dumps(body).encode("utf-8")
    headers = {"Content-Type": "", "Content-Length": str(len(data))}
    request = urllib.request.Request(url, data=data, method="PUT", headers=headers)  # noqa: S310 - HTTPS only
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - HTTPS checked above
        response.read()


def _client(service: str) -> Any:
    return boto3.client(service, config=CLIENT_CONFIG)  # type: ignore[call-overload]


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", ""))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
