"""`rtp doctor`: a read-only preflight of the real AWS account and region an environment deploys to.

Each check returns one row, PASS / WARN / FAIL, with what it saw, the fix, and the AWS documentation
page whose rule it encodes. Nothing here writes to AWS: every call is a Get/Describe/List. A check that
cannot look (access denied, endpoint unreachable) says so as a WARN; it never passes silently.

Entry points: `run_doctor` (pure: takes a client factory and the synthesized assembly's facts, so tests
drive it with botocore Stubber) and `diagnose` (the CLI's: a boto3 session and the cached synth).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from rtp_cli.cdk import Identity, is_production
from stack.config import LAMBDA_MIN_UNRESERVED_CONCURRENCY, EnvironmentConfig
from stack.custom_resources.api_gateway_account.handler import trusts_apigateway

Status = Literal["PASS", "WARN", "FAIL"]
Clients = Callable[[str], Any]  # service name -> boto3 client for the target account and region

# The documentation page each check encodes (also printed with every WARN/FAIL and in --json).
DOC_CREDENTIALS = "https://docs.aws.amazon.com/cdk/v2/guide/environments.html"
DOC_CDK_CLI = "https://docs.aws.amazon.com/cdk/v2/guide/cli.html"
DOC_STACK_STATE = (
    "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-describing-stacks.html"
)
DOC_CONTINUE_ROLLBACK = (
    "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/"
    "using-cfn-updating-stacks-continueupdaterollback.html"
)
DOC_BOOTSTRAP = "https://docs.aws.amazon.com/cdk/v2/guide/bootstrapping-env.html"
DOC_POWERTOOLS_LAYER = (
    "https://docs.aws.amazon.com/powertools/python/latest/getting-started/install/#using-ssm-parameter-store"
)
DOC_SSM_PARAMETER_TYPES = "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-supplied-parameter-types.html"
DOC_LAMBDA_RESERVED = "https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html"
DOC_LAMBDA_PROVISIONED = "https://docs.aws.amazon.com/lambda/latest/dg/provisioned-concurrency.html"
DOC_LAMBDA_QUOTAS = "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"
DOC_APIGW_LOGGING = "https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-logging.html"
DOC_APIGW_THROTTLING = (
    "https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-request-throttling.html"
)
DOC_SNS_EMAIL = "https://docs.aws.amazon.com/sns/latest/dg/sns-email-notifications.html"

# CloudFormation stack states (DescribeStacks) and what a deploy can do from each (DOC_STACK_STATE).
DEPLOYABLE_STATES = frozenset(
    {
        "CREATE_COMPLETE",
        "UPDATE_COMPLETE",
        "UPDATE_ROLLBACK_COMPLETE",
        "IMPORT_COMPLETE",
        "IMPORT_ROLLBACK_COMPLETE",
    }
)
# "When in this state, only a delete operation can be performed" (ROLLBACK_COMPLETE), and the other
# terminal failures of a first create or of a delete: the stack must be deleted before a new deploy.
DELETE_FIRST_STATES = frozenset({"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED"})
DEFAULT_BOOTSTRAP_QUALIFIER = "hnb659fds"
BOOTSTRAP_VERSION_PARAMETER = "BootstrapVersion"  # the parameter DefaultStackSynthesizer adds to templates


class DoctorError(RuntimeError):
    """Doctor cannot run at all (no credentials, wrong account, no region): exit code 2."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str = ""
    doc: str = ""


@dataclass
class DoctorReport:
    env: str
    account: str
    region: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "FAIL"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "WARN"]

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "account": self.account,
            "region": self.region,
            "ok": self.ok,
            "checks": [asdict(c) for c in self.checks],
        }


@dataclass(frozen=True)
class AssemblyFacts:
    """What the synthesized cloud assembly requires of the account, read from its files."""

    bootstrap_parameter: str  # SSM parameter holding the bootstrap stack's version
    min_bootstrap_version: int
    ssm_parameters: tuple[str, ...]  # other SSM parameters the template resolves at deploy time


# ---- reading the synthesized assembly -----------------------------------------------------------------
def min_version_from_rule(template: dict[str, Any]) -> int | None:
    """The minimum bootstrap version the template's `CheckBootstrapVersion` rule asserts: the rule says
    `Fn::Not(Fn::Contains([versions too old...], Ref BootstrapVersion))`, so the minimum is one above the
    largest refused version."""
    rule = template.get("Rules", {}).get("CheckBootstrapVersion", {})
    refused: list[int] = []
    for assertion in rule.get("Assertions", []):
        negated = assertion.get("Assert", {}).get("Fn::Not", [])
        for condition in negated:
            contains = condition.get("Fn::Contains") if isinstance(condition, dict) else None
            if contains and isinstance(contains[0], list):
                refused.extend(int(v) for v in contains[0] if str(v).isdigit())
    return max(refused) + 1 if refused else None


def assembly_facts(
    template_path: Path, qualifier: str | None = None, stack_name: str | None = None
) -> AssemblyFacts:
    """Facts from a synthesized template and its `manifest.json` (same directory). The minimum bootstrap
    version is the larger of the template's rule and the manifest's `requiresBootstrapStackVersion`, the
    two places the pinned CDK CLI and CloudFormation enforce it. `qualifier` (cdk.json's
    `@aws-cdk/core:bootstrapQualifier`) replaces the default one, as `cdk deploy` would."""
    template: dict[str, Any] = json.loads(template_path.read_text(encoding="utf-8"))
    minimums = [v for v in (min_version_from_rule(template),) if v is not None]
    parameter = ""
    manifest_path = template_path.parent / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        for name, artifact in manifest.get("artifacts", {}).items():
            if artifact.get("type") != "aws:cloudformation:stack" or (stack_name and name != stack_name):
                continue
            properties = artifact.get("properties", {})
            if "requiresBootstrapStackVersion" in properties:
                minimums.append(int(properties["requiresBootstrapStackVersion"]))
            parameter = properties.get("bootstrapStackVersionSsmParameter", parameter)
    parameters = template.get("Parameters", {})
    if not parameter:
        parameter = str(parameters.get(BOOTSTRAP_VERSION_PARAMETER, {}).get("Default", ""))
    if not parameter:
        parameter = f"/cdk-bootstrap/{DEFAULT_BOOTSTRAP_QUALIFIER}/version"
    if qualifier and qualifier != DEFAULT_BOOTSTRAP_QUALIFIER:
        parameter = parameter.replace(f"/{DEFAULT_BOOTSTRAP_QUALIFIER}/", f"/{qualifier}/")
    ssm = tuple(
        str(spec["Default"])
        for name, spec in parameters.items()
        if name != BOOTSTRAP_VERSION_PARAMETER
        and str(spec.get("Type", "")).startswith("AWS::SSM::Parameter::Value<")
        and spec.get("Default")
    )
    return AssemblyFacts(parameter, max(minimums) if minimums else 1, ssm)


# ---- the checks -----------------------------------------------------------------------------------------
def _error_code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return type(error).__name__


def _could_not_check(name: str, action: str, error: Exception, doc: str) -> CheckResult:
    """A check that could not look is a WARN that says why, never a PASS."""
    code = _error_code(error)
    hint = (
        f" (these credentials may not call {action})"
        if "AccessDenied" in code or "Unauthorized" in code
        else ""
    )
    return CheckResult(name, "WARN", f"could not check: {action} failed: {error}{hint}", "", doc)


def check_identity(
    config: EnvironmentConfig, identity: Identity, region: str, region_source: str
) -> CheckResult:
    pinned = (
        f"matches account {config.account} / {config.region} pinned in config/{config.name}.yaml"
        if config.account
        else f"config/{config.name}.yaml pins no account: the stack goes where these credentials point"
    )
    return CheckResult(
        "credentials and account",
        "PASS",
        f"{identity.arn} in account {identity.account}, region {region} ({region_source}); {pinned}",
        doc=DOC_CREDENTIALS,
    )


def check_cdk_cli() -> CheckResult:
    from rtp_cli.cdk import CdkError, check_cdk_installed, pinned_cdk_version

    try:
        check_cdk_installed()
    except CdkError as error:
        return CheckResult("CDK CLI", "FAIL", str(error), "make install (runs npm ci)", DOC_CDK_CLI)
    return CheckResult("CDK CLI", "PASS", f"aws-cdk {pinned_cdk_version()} (package.json pin) is installed")


def describe_stack(clients: Clients, stack_name: str) -> dict[str, Any] | None:
    """The stack as DescribeStacks returns it, or None when it does not exist. Other errors raise."""
    try:
        stacks = clients("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error.response.get("Error", {}).get("Message", "")):
            return None
        raise
    return dict(stacks[0]) if stacks else None


def check_stack_state(env: str, stack_name: str, stack: dict[str, Any] | None) -> CheckResult:
    name = "stack state"
    if stack is None:
        return CheckResult(name, "PASS", f"{stack_name} is not deployed yet: the first deploy creates it")
    state = str(stack.get("StackStatus", ""))
    reason = f" ({stack['StackStatusReason']})" if stack.get("StackStatusReason") else ""
    if state in DEPLOYABLE_STATES:
        return CheckResult(name, "PASS", f"{stack_name} is {state}: it can be updated", doc=DOC_STACK_STATE)
    if state in DELETE_FIRST_STATES:
        return CheckResult(
            name,
            "FAIL",
            f"{stack_name} is {state}{reason}: CloudFormation can only delete a stack in this state",
            f"find the first failure in its events, fix it, then `rtp destroy --env {env}` and deploy again",
            DOC_STACK_STATE,
        )
    if state == "UPDATE_ROLLBACK_FAILED":
        return CheckResult(
            name,
            "FAIL",
            f"{stack_name} is {state}{reason}: it cannot be updated until the rollback completes",
            f"aws cloudformation continue-update-rollback --stack-name {stack_name} (fix the cause first)",
            DOC_CONTINUE_ROLLBACK,
        )
    if state.endswith("_IN_PROGRESS") and state != "REVIEW_IN_PROGRESS":
        return CheckResult(
            name,
            "FAIL",
            f"{stack_name} is {state}: another operation is running",
            "wait for it to finish (`rtp status`), then deploy",
            DOC_STACK_STATE,
        )
    return CheckResult(
        name,
        "WARN",
        f"{stack_name} is {state}{reason}",
        "check the stack's events before deploying",
        DOC_STACK_STATE,
    )


def check_bootstrap(
    clients: Clients,
    account: str,
    region: str,
    facts: AssemblyFacts | None,
    facts_error: str = "",
    cli_template_version: int | None = None,
) -> CheckResult:
    """The CDK bootstrap stack's version parameter exists and is at least what this app's assembly needs
    (`CheckBootstrapVersion` rule / `requiresBootstrapStackVersion`)."""
    name = "CDK bootstrap"
    parameter = (
        facts.bootstrap_parameter if facts else f"/cdk-bootstrap/{DEFAULT_BOOTSTRAP_QUALIFIER}/version"
    )
    bootstrap = f"npx cdk bootstrap aws://{account}/{region}"
    try:
        value = clients("ssm").get_parameter(Name=parameter)["Parameter"]["Value"]
    except ClientError as error:
        if _error_code(error) == "ParameterNotFound":
            return CheckResult(
                name,
                "FAIL",
                f"{parameter} does not exist: account {account} is not CDK-bootstrapped in {region}",
                bootstrap,
                DOC_BOOTSTRAP,
            )
        return _could_not_check(name, f"ssm:GetParameter {parameter}", error, DOC_BOOTSTRAP)
    except BotoCoreError as error:
        return _could_not_check(name, f"ssm:GetParameter {parameter}", error, DOC_BOOTSTRAP)
    try:
        version = int(str(value))
    except ValueError:
        return CheckResult(
            name, "FAIL", f"{parameter} holds {value!r}, not a version", bootstrap, DOC_BOOTSTRAP
        )
    if facts is None:
        return CheckResult(
            name,
            "WARN",
            f"bootstrapped (version {version}), but the version this app needs is unknown: {facts_error}",
            "run `rtp synth` to see why the app does not synthesize",
            DOC_BOOTSTRAP,
        )
    if version < facts.min_bootstrap_version:
        return CheckResult(
            name,
            "FAIL",
            f"bootstrap version {version} in {region}, but this app's templates require at least "
            f"{facts.min_bootstrap_version}",
            f"{bootstrap} (updates the CDKToolkit stack in place)",
            DOC_BOOTSTRAP,
        )
    newer = (
        f"; the pinned CLI bootstraps version {cli_template_version} (re-running `cdk bootstrap` is optional)"
        if cli_template_version and cli_template_version > version
        else ""
    )
    return CheckResult(
        name,
        "PASS",
        f"version {version} (this app needs at least {facts.min_bootstrap_version}){newer}",
        doc=DOC_BOOTSTRAP,
    )


def check_ssm_parameters(clients: Clients, region: str, parameters: tuple[str, ...]) -> list[CheckResult]:
    """Every SSM parameter the template resolves at change-set time (the Powertools layer ARN) exists in
    the region; otherwise the deploy fails only after the change set is created."""
    results = []
    for parameter in parameters:
        powertools = parameter.startswith("/aws/service/powertools/")
        name = "Powertools layer" if powertools else f"SSM parameter {parameter}"
        doc = DOC_POWERTOOLS_LAYER if powertools else DOC_SSM_PARAMETER_TYPES
        try:
            value = clients("ssm").get_parameter(Name=parameter)["Parameter"]["Value"]
        except ClientError as error:
            if _error_code(error) == "ParameterNotFound":
                what = "the Powertools layer is not published" if powertools else "it does not exist"
                results.append(
                    CheckResult(
                        name,
                        "FAIL",
                        f"{parameter} does not resolve in {region}: {what} there, so the deploy would fail "
                        "at change-set creation",
                        "deploy to a region where the parameter exists (set `region` in the YAML), "
                        "see the layer's region list",
                        doc,
                    )
                )
            else:
                results.append(_could_not_check(name, f"ssm:GetParameter {parameter}", error, doc))
            continue
        except BotoCoreError as error:
            results.append(_could_not_check(name, f"ssm:GetParameter {parameter}", error, doc))
            continue
        results.append(CheckResult(name, "PASS", f"{parameter} -> {value}", doc=doc))
    return results


@dataclass(frozen=True)
class ConcurrencyClaim:
    reserved: dict[str, int]
    provisioned_outside_reservations: int

    @property
    def total(self) -> int:
        return sum(self.reserved.values()) + self.provisioned_outside_reservations

    def describe(self) -> str:
        parts = [f"{fn} {n}" for fn, n in self.reserved.items()]
        if self.provisioned_outside_reservations:
            parts.append(f"{self.provisioned_outside_reservations} provisioned (ingest, no reservation)")
        return ", ".join(parts)


def concurrency_claim(config: EnvironmentConfig) -> ConcurrencyClaim:
    """What the stack takes out of the account's unreserved pool: every reservation, plus provisioned
    concurrency of a function without one (provisioned concurrency inside a reservation is part of it;
    outside, it shrinks the pool other functions share: DOC_LAMBDA_PROVISIONED)."""
    functions = config.functions
    reserved = {
        fn: cfg.reserved_concurrency
        for fn, cfg in (
            ("ingest", functions.ingest),
            ("processor", functions.processor),
            ("query", functions.query),
        )
        if cfg.reserved_concurrency is not None
    }
    outside = functions.ingest.provisioned_concurrency if functions.ingest.reserved_concurrency is None else 0
    return ConcurrencyClaim(reserved, outside)


FUNCTION_OUTPUTS = {
    "ingest": "IngestFunctionName",
    "processor": "ProcessorFunctionName",
    "query": "QueryFunctionName",
}


def check_lambda_concurrency(
    clients: Clients, config: EnvironmentConfig, stack: dict[str, Any] | None
) -> list[CheckResult]:
    """GetAccountSettings against the config's reservations, keeping Lambda's 100 unreserved minimum,
    and the YAML's `account_concurrency_limit` against the real quota."""
    name = "Lambda concurrency"
    lambda_ = clients("lambda")
    try:
        limits = lambda_.get_account_settings()["AccountLimit"]
    except (ClientError, BotoCoreError) as error:
        return [_could_not_check(name, "lambda:GetAccountSettings", error, DOC_LAMBDA_RESERVED)]
    limit = int(limits["ConcurrentExecutions"])
    unreserved = int(limits["UnreservedConcurrentExecutions"])
    # A deployed stack's own reservations are already out of the unreserved pool: give them back, since
    # the deploy replaces them rather than adding to them.
    ours = 0
    outputs = {o["OutputKey"]: o["OutputValue"] for o in (stack or {}).get("Outputs", [])}
    for key in FUNCTION_OUTPUTS.values():
        function = outputs.get(key)
        if not function:
            continue
        try:
            ours += int(
                lambda_.get_function_concurrency(FunctionName=function).get("ReservedConcurrentExecutions", 0)
            )
        except (ClientError, BotoCoreError) as error:
            return [
                _could_not_check(
                    name, f"lambda:GetFunctionConcurrency {function}", error, DOC_LAMBDA_RESERVED
                )
            ]
    claim = concurrency_claim(config)
    available = unreserved + ours
    left = available - claim.total
    floor = LAMBDA_MIN_UNRESERVED_CONCURRENCY
    pool = f"account limit {limit}, unreserved {unreserved}" + (
        f" (+{ours} held by this stack today)" if ours else ""
    )
    results: list[CheckResult] = []
    if claim.total == 0:
        results.append(
            CheckResult(name, "PASS", f"no reservations configured; {pool}", doc=DOC_LAMBDA_RESERVED)
        )
    elif left >= floor:
        results.append(
            CheckResult(
                name,
                "PASS",
                f"reserves {claim.total} ({claim.describe()}) of {pool}; "
                f"leaves {left} unreserved (at least {floor})",
                doc=DOC_LAMBDA_RESERVED,
            )
        )
    else:
        needed = limit + (floor - left)
        results.append(
            CheckResult(
                name,
                "FAIL",
                f"config/{config.name}.yaml reserves {claim.total} ({claim.describe()}), "
                f"but with {pool} Lambda can grant at most {max(available - floor, 0)}: "
                f"it keeps {floor} unreserved, so the deploy would fail when it sets the reservations",
                f"request the Lambda 'Concurrent executions' quota raised to at least {needed} "
                "(Service Quotas), or lower functions.*.reserved_concurrency / provisioned_concurrency",
                DOC_LAMBDA_RESERVED,
            )
        )
    assumed = config.account_concurrency_limit
    key = f"config/{config.name}.yaml account_concurrency_limit"
    if assumed > limit:
        results.append(
            CheckResult(
                "account_concurrency_limit",
                "WARN",
                f"{key} assumes {assumed}, but this account's Lambda quota is {limit} in this region "
                "(new accounts start low): synth checked the reservations against a number that is wrong",
                f"set account_concurrency_limit: {limit} (synth then refuses what the account cannot grant), "
                f"or request the quota raised to {assumed}",
                DOC_LAMBDA_QUOTAS,
            )
        )
    else:
        more = f"; you may raise it to {limit}" if limit > assumed else ""
        results.append(
            CheckResult(
                "account_concurrency_limit",
                "PASS",
                f"{key} is {assumed}; the account's quota is {limit}{more}",
                doc=DOC_LAMBDA_QUOTAS,
            )
        )
    return results


OUTLIVES_STACK = (
    "the account setting and the role it names are shared by every REST API in this account and region, "
    "so they stay after `rtp destroy`"
)


def _role_name(role_arn: str) -> str:
    return role_arn.rsplit("/", 1)[-1]


def check_api_gateway_account(
    clients: Clients, config: EnvironmentConfig, account_settings: dict[str, Any]
) -> CheckResult:
    """API Gateway's account-level CloudWatch role: the stage's access logging needs it."""
    name = "API Gateway CloudWatch role"
    role_arn = account_settings.get("cloudwatchRoleArn")
    # The custom resource runs when the stack is created (or its properties change), not on every deploy.
    repair = (
        "a first deploy of this stack sets a working role (its account-role custom resource); on a stack "
        "that already exists it does not run again: set it with `aws apigateway update-account "
        "--patch-operations op=replace,path=/cloudwatchRoleArn,value=<a role trusted by apigateway."
        "amazonaws.com with AmazonAPIGatewayPushToCloudWatchLogs>`"
    )
    if not role_arn:
        return CheckResult(
            name,
            "WARN",
            "cloudwatchRoleArn is not set in this region: a stage with access logging fails with 'CloudWatch "
            f"Logs role ARN must be set in account settings to enable logging'; {OUTLIVES_STACK} once set",
            repair,
            DOC_APIGW_LOGGING,
        )
    try:
        role = clients("iam").get_role(RoleName=_role_name(role_arn))["Role"]
    except ClientError as error:
        if _error_code(error) == "NoSuchEntity":
            return CheckResult(
                name,
                "WARN",
                f"cloudwatchRoleArn names {role_arn}, which no longer exists (dangling): the stage's logging "
                f"setup would fail; {OUTLIVES_STACK}",
                repair,
                DOC_APIGW_LOGGING,
            )
        return _could_not_check(name, f"iam:GetRole {_role_name(role_arn)}", error, DOC_APIGW_LOGGING)
    except BotoCoreError as error:
        return _could_not_check(name, f"iam:GetRole {_role_name(role_arn)}", error, DOC_APIGW_LOGGING)
    # The custom resource's own verdict (a pure function), so doctor and deploy never disagree.
    if not trusts_apigateway(role.get("AssumeRolePolicyDocument", {})):
        return CheckResult(
            name,
            "WARN",
            f"cloudwatchRoleArn names {role_arn}, but its trust policy does not let apigateway.amazonaws.com "
            "assume it",
            repair,
            DOC_APIGW_LOGGING,
        )
    return CheckResult(
        name,
        "PASS",
        f"{role_arn} exists and trusts apigateway.amazonaws.com; {OUTLIVES_STACK}",
        doc=DOC_APIGW_LOGGING,
    )


def check_api_gateway_throttle(config: EnvironmentConfig, account_settings: dict[str, Any]) -> CheckResult:
    """Stage limits above the account's regional limits never take effect: the account limit throttles
    first, for all APIs in the region together."""
    name = "API Gateway account throttle"
    throttle = account_settings.get("throttleSettings") or {}
    rate, burst = throttle.get("rateLimit"), throttle.get("burstLimit")
    if rate is None or burst is None:
        return CheckResult(name, "WARN", "GetAccount returned no throttleSettings", "", DOC_APIGW_THROTTLING)
    wanted_rate, wanted_burst = config.api.throttle_rate_limit, config.api.throttle_burst_limit
    if wanted_rate > float(rate) or wanted_burst > int(burst):
        return CheckResult(
            name,
            "WARN",
            f"config/{config.name}.yaml sets the stage to {wanted_rate:g} req/s (burst {wanted_burst}), "
            f"above this account's {float(rate):g} req/s (burst {burst}) shared by all its APIs in the "
            "region: clients get 429 at the account limit",
            "request an account-level increase (AWS Support) or lower api.throttle_rate_limit / "
            "api.throttle_burst_limit",
            DOC_APIGW_THROTTLING,
        )
    return CheckResult(
        name,
        "PASS",
        f"stage {wanted_rate:g} req/s (burst {wanted_burst}) within the account's {float(rate):g} req/s "
        f"(burst {burst})",
        doc=DOC_APIGW_THROTTLING,
    )


def check_alarm_email(
    clients: Clients, config: EnvironmentConfig, stack: dict[str, Any] | None, region: str
) -> CheckResult:
    """Alarms reach a person only through a confirmed subscription."""
    from rtp_cli.status import email_subscription_problems

    name = "alarm e-mail"
    email = config.alarms.email
    if not email:
        if is_production(config.name):
            return CheckResult(
                name,
                "WARN",
                f"config/{config.name}.yaml sets no alarms.email: "
                "alarms notify a topic nobody is subscribed to",
                "set alarms.email to the on-call address",
                DOC_SNS_EMAIL,
            )
        return CheckResult(name, "PASS", "no alarms.email configured: alarms are visible in CloudWatch only")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in (stack or {}).get("Outputs", [])}
    topic = outputs.get("AlarmTopicArn")
    if not topic:
        return CheckResult(
            name,
            "PASS",
            f"after the first deploy SNS e-mails {email} a confirmation link; nothing is delivered until it "
            "is confirmed (`rtp status` shows it while pending)",
            doc=DOC_SNS_EMAIL,
        )
    try:
        problems = email_subscription_problems(clients("sns"), topic, email, region)
    except (ClientError, BotoCoreError) as error:
        return _could_not_check(name, "sns:ListSubscriptionsByTopic", error, DOC_SNS_EMAIL)
    if problems:
        problem = problems[0]
        return CheckResult(name, "WARN", problem.detail, problem.fix, DOC_SNS_EMAIL)
    return CheckResult(name, "PASS", f"{email} is subscribed and confirmed", doc=DOC_SNS_EMAIL)


# ---- running them ------------------------------------------------------------------------------------------
def run_doctor(
    config: EnvironmentConfig,
    identity: Identity,
    region: str,
    clients: Clients,
    facts: AssemblyFacts | None,
    *,
    region_source: str = "",
    facts_error: str = "",
    cli_template_version: int | None = None,
    include_cdk_cli: bool = True,
) -> DoctorReport:
    """Every check, in the order a first deploy would trip on them. Read-only."""
    report = DoctorReport(config.name, identity.account, region)
    checks = report.checks
    checks.append(check_identity(config, identity, region, region_source or "configured"))
    if include_cdk_cli:
        checks.append(check_cdk_cli())
    stack: dict[str, Any] | None = None
    try:
        stack = describe_stack(clients, config.stack_name)
        checks.append(check_stack_state(config.name, config.stack_name, stack))
    except (ClientError, BotoCoreError) as error:
        checks.append(
            _could_not_check("stack state", "cloudformation:DescribeStacks", error, DOC_STACK_STATE)
        )
    checks.append(
        check_bootstrap(clients, identity.account, region, facts, facts_error, cli_template_version)
    )
    if facts is not None:
        checks.extend(check_ssm_parameters(clients, region, facts.ssm_parameters))
    checks.extend(check_lambda_concurrency(clients, config, stack))
    try:
        settings = clients("apigateway").get_account()
    except (ClientError, BotoCoreError) as error:
        checks.append(
            _could_not_check("API Gateway account", "apigateway:GetAccount", error, DOC_APIGW_LOGGING)
        )
    else:
        checks.append(check_api_gateway_account(clients, config, settings))
        checks.append(check_api_gateway_throttle(config, settings))
    checks.append(check_alarm_email(clients, config, stack, region))
    return report


def facts_for(env: str, qualifier: str | None) -> AssemblyFacts:
    """Synthesize (reusing the synth cache when nothing changed) and read the assembly's requirements."""
    from rtp_cli.synthcache import synthesize_cached

    cached = synthesize_cached(env)
    return assembly_facts(cached.template_path, qualifier, cached.stack_name)


def aws_clients(profile: str | None, region: str | None) -> tuple[Clients, str | None]:
    """A client factory on the standard credential chain (or --profile), and the region it resolves to
    (the config's when pinned, else AWS_REGION / the profile's)."""
    import boto3
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import ProfileNotFound

    try:
        session = boto3.Session(profile_name=profile, region_name=region)
    except ProfileNotFound as error:
        raise DoctorError(f"AWS profile {profile!r} not found") from error
    resolved = region or session.region_name
    retries = BotoConfig(retries={"mode": "standard", "max_attempts": 5})
    make: Any = session.client  # service is dynamic: skip the per-service stub overloads

    def clients(service: str) -> Any:
        return make(service, region_name=resolved, config=retries)

    return clients, resolved


def diagnose(config: EnvironmentConfig, identity: Identity, profile: str | None) -> DoctorReport:
    """The CLI's doctor: real clients, the cached synth, the pinned CLI's bootstrap template. Raises
    DoctorError when it cannot run at all."""
    from rtp_cli.cdk import bootstrap_qualifier, cli_bootstrap_template_version

    clients, region = aws_clients(profile, config.region)
    if not region:
        raise DoctorError(
            f"no AWS region for environment {config.name!r}: set `region` in config/{config.name}.yaml, "
            "AWS_REGION, or a region in your AWS profile"
        )
    source = f"pinned in config/{config.name}.yaml" if config.region else "from AWS_REGION / the profile"
    facts: AssemblyFacts | None = None
    facts_error = ""
    try:
        facts = facts_for(config.name, bootstrap_qualifier())
    except Exception as error:  # a broken synth must not hide the account checks
        facts_error = f"{type(error).__name__}: {error}"
    return run_doctor(
        config,
        identity,
        region,
        clients,
        facts,
        region_source=source,
        facts_error=facts_error,
        cli_template_version=cli_bootstrap_template_version(),
    )


_VERSION = re.compile(r"CdkBootstrapVersion:.*?Value:\s*'?(\d+)'?", re.DOTALL)


def template_version(bootstrap_template: str) -> int | None:
    """The version the CDK CLI's bootstrap template writes to its SSM parameter."""
    match = _VERSION.search(bootstrap_template)
    return int(match.group(1)) if match else None
