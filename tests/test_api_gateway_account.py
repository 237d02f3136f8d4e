"""The API Gateway account-logging custom resource (stack/api_gateway_account.py and its handler).

Against moto: unset -> set; set and working -> untouched; set to a role that no longer exists (or does not
trust API Gateway) -> repaired; the shared role reused, never duplicated; delete -> untouched. With botocore's
Stubber: IAM propagation retried, bounded, then a clear failure. Every AWS call the handler makes in these
scenarios is checked against the provider's role in the synthesized template, and the local runtime's view
of the resource (AWS-only) is pinned.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from rtp_cli.local.inprocess import ACCOUNT, REGION, Resolver
from rtp_cli.local.resources import provision
from rtp_cli.local.template import Template, TemplateError
from stack.api_gateway_account import RESOURCE_TYPE, ROLE_NAME
from stack.custom_resources.api_gateway_account import handler
from tests.template_tools import only, props, role_statements, target

MANAGED_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
SHARED_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE_NAME}"
APIGATEWAY_TRUST: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "apigateway.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
LAMBDA_TRUST: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


# --- harness ----------------------------------------------------------------------------------------
@dataclass
class FakeContext:
    remaining_ms: int = 180_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class Recorded:
    """The calls one scenario made (service, operation, params) and the response sent to CloudFormation."""

    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    responses: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)

    @property
    def operations(self) -> list[str]:
        return [f"{service}:{operation}" for service, operation, _ in self.calls]

    @property
    def response(self) -> Mapping[str, Any]:
        assert len(self.responses) == 1, "exactly one answer to CloudFormation"
        return self.responses[0][1]

    def send(self, url: str, body: Mapping[str, Any]) -> None:
        json.dumps(body)  # what send_response would serialize
        self.responses.append((url, body))


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        _add_aws_managed_policy("AmazonAPIGatewayPushToCloudWatchLogs")
        yield


def _add_aws_managed_policy(name: str) -> None:
    """AttachRolePolicy needs the AWS managed policy to exist, as in AWS. moto can load all ~1,300 of them
    (`load_aws_managed_policies`, about 3.5 s per test); this loads the one the handler attaches."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data
    from moto.iam.models import AWSManagedPolicy, iam_backends

    data = json.loads(aws_managed_policies_data)[name]
    policy = AWSManagedPolicy.from_data(name, ACCOUNT, REGION, data)
    iam_backends[ACCOUNT]["global"].managed_policies[policy.arn] = policy


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]


def recording_clients(recorded: Recorded) -> Callable[[str], Any]:
    def make(service: str) -> Any:
        made = client(service)

        def on_call(params: dict[str, Any], model: Any, **_: Any) -> None:
            recorded.calls.append((service, model.name, dict(params)))

        made.meta.events.register("provide-client-params.*.*", on_call)
        return made

    return make


@pytest.fixture(scope="module")
def resource_properties(templates: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The custom resource's properties exactly as the stack passes them (intrinsics resolved)."""
    _, resource = only(templates["dev"], RESOURCE_TYPE)
    resolved: dict[str, Any] = Resolver(templates["dev"])(props(resource))
    return {key: value for key, value in resolved.items() if key not in ("ServiceToken", "ServiceTimeout")}


def event(request: str, properties: Mapping[str, Any], physical_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "RequestType": request,
        "ResponseURL": "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x?sig=1",
        "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/rtp-dev/guid",
        "RequestId": "req-1",
        "LogicalResourceId": "ApiLogging",
        "ResourceType": RESOURCE_TYPE,
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:...", **properties},
    }
    if physical_id is not None:
        body["PhysicalResourceId"] = physical_id
    return body


def run(request: str, properties: Mapping[str, Any], physical_id: str | None = None) -> Recorded:
    recorded = Recorded()
    handler.on_event(
        event(request, properties, physical_id),
        FakeContext(),
        clients=recording_clients(recorded),
        send=recorded.send,
        sleep=lambda _: pytest.fail("moto never refuses a role: nothing to wait for"),
    )
    return recorded


def account_role() -> str | None:
    value = client("apigateway").get_account().get("cloudwatchRoleArn")
    return str(value) if value else None


def set_account_role(arn: str) -> None:
    client("apigateway").update_account(
        patchOperations=[{"op": "replace", "path": "/cloudwatchRoleArn", "value": arn}]
    )


def create_role(name: str, trust: dict[str, Any]) -> str:
    return str(
        client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    )


# --- moto scenarios ---------------------------------------------------------------------------------
def test_unset_account_role_is_created_and_set(aws: None, resource_properties: dict[str, Any]) -> None:
    assert account_role() is None
    recorded = run("Create", resource_properties)
    response = recorded.response
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["Data"] == {"RoleArn": SHARED_ROLE_ARN, "Action": "set"}
    assert account_role() == SHARED_ROLE_ARN
    iam = client("iam")
    role = iam.get_role(RoleName=ROLE_NAME)["Role"]
    assert handler.trusts_apigateway(role["AssumeRolePolicyDocument"])
    attached = iam.list_attached_role_policies(RoleName=ROLE_NAME)["AttachedPolicies"]
    assert [policy["PolicyArn"] for policy in attached] == [MANAGED_POLICY_ARN]
    assert {tag["Key"]: tag["Value"] for tag in iam.list_role_tags(RoleName=ROLE_NAME)["Tags"]} == {
        "Project": "rtp"
    }
    assert "iam:CreateRole" in recorded.operations and "apigateway:UpdateAccount" in recorded.operations


def test_working_account_role_is_left_alone(aws: None, resource_properties: dict[str, Any]) -> None:
    baseline = create_role("org-baseline-apigw-logs", APIGATEWAY_TRUST)
    set_account_role(baseline)
    recorded = run("Create", resource_properties)
    assert recorded.response["Status"] == "SUCCESS"
    assert recorded.response["Data"] == {"RoleArn": baseline, "Action": "kept"}
    assert account_role() == baseline
    assert recorded.operations == ["apigateway:GetAccount", "iam:GetRole"], "read-only when it works"
    with pytest.raises(ClientError, match="NoSuchEntity"):
        client("iam").get_role(RoleName=ROLE_NAME)


def test_account_role_that_no_longer_exists_is_repaired(
    aws: None, resource_properties: dict[str, Any]
) -> None:
    set_account_role(f"arn:aws:iam::{ACCOUNT}:role/deleted-long-ago")
    recorded = run("Update", resource_properties, physical_id=handler.PHYSICAL_RESOURCE_ID)
    assert recorded.response["Status"] == "SUCCESS"
    assert recorded.response["PhysicalResourceId"] == handler.PHYSICAL_RESOURCE_ID
    assert recorded.response["Data"]["Action"] == "set"
    assert account_role() == SHARED_ROLE_ARN


def test_account_role_that_does_not_trust_api_gateway_is_repaired(
    aws: None, resource_properties: dict[str, Any]
) -> None:
    set_account_role(create_role("some-lambda-role", LAMBDA_TRUST))
    assert run("Create", resource_properties).response["Data"]["Action"] == "set"
    assert account_role() == SHARED_ROLE_ARN


def test_shared_role_of_another_environment_is_reused_not_duplicated(
    aws: None, resource_properties: dict[str, Any]
) -> None:
    """Another rtp environment (or region: IAM is global) created the role; this region's setting is unset."""
    create_role(ROLE_NAME, APIGATEWAY_TRUST)
    recorded = run("Create", resource_properties)
    assert recorded.response["Data"] == {"RoleArn": SHARED_ROLE_ARN, "Action": "set"}
    assert "iam:CreateRole" not in recorded.operations
    assert "iam:AttachRolePolicy" in recorded.operations  # idempotent: makes sure the policy is there
    assert account_role() == SHARED_ROLE_ARN


def test_shared_role_that_does_not_trust_api_gateway_fails_clearly(
    aws: None, resource_properties: dict[str, Any]
) -> None:
    create_role(ROLE_NAME, LAMBDA_TRUST)
    recorded = run("Create", resource_properties)
    assert recorded.response["Status"] == "FAILED"
    assert (
        f"IAM role {ROLE_NAME} exists but does not trust apigateway.amazonaws.com"
        in recorded.response["Reason"]
    )
    assert account_role() is None, "nothing was set"


def test_delete_leaves_the_role_and_the_setting_in_place(
    aws: None, resource_properties: dict[str, Any]
) -> None:
    run("Create", resource_properties)
    recorded = run("Delete", resource_properties, physical_id=handler.PHYSICAL_RESOURCE_ID)
    assert recorded.response["Status"] == "SUCCESS"
    assert recorded.response["PhysicalResourceId"] == handler.PHYSICAL_RESOURCE_ID
    assert recorded.calls == [], "Delete makes no AWS call at all"
    assert account_role() == SHARED_ROLE_ARN
    client("iam").get_role(RoleName=ROLE_NAME)


def test_any_aws_failure_is_reported_to_cloudformation(
    aws: None, resource_properties: dict[str, Any]
) -> None:
    """The GetAccount call is refused, and CloudFormation still gets its answer."""
    apigateway = client("apigateway")
    stub = Stubber(apigateway)
    stub.add_client_error("get_account", "AccessDeniedException", "not authorized to perform apigateway:GET")
    recorded = Recorded()
    with stub:
        handler.on_event(
            event("Create", resource_properties),
            FakeContext(),
            clients=lambda service: apigateway if service == "apigateway" else client(service),
            send=recorded.send,
        )
    assert recorded.response["Status"] == "FAILED"
    assert "apigateway:GET" in recorded.response["Reason"]


def test_unknown_request_type_is_refused() -> None:
    recorded = Recorded()
    handler.on_event(
        event("Rename", {}), FakeContext(), clients=lambda _: pytest.fail("no call"), send=recorded.send
    )
    assert (
        recorded.response["Status"] == "FAILED"
        and "unknown RequestType 'Rename'" in recorded.response["Reason"]
    )


def test_response_carries_what_cloudformation_matches_it_by() -> None:
    body = handler.response_body(event("Create", {}), "FAILED", "pid", "x" * 5000)
    assert {
        key: body[key] for key in ("StackId", "RequestId", "LogicalResourceId", "PhysicalResourceId")
    } == {
        "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/rtp-dev/guid",
        "RequestId": "req-1",
        "LogicalResourceId": "ApiLogging",
        "PhysicalResourceId": "pid",
    }
    assert len(json.dumps(body)) < 4096, "CloudFormation refuses larger responses"


def test_response_is_only_sent_over_https() -> None:
    with pytest.raises(ValueError, match="non-HTTPS"):
        handler.send_response("http://example.com/x", {})


# --- IAM propagation (Stubber) ------------------------------------------------------------------------
PROPAGATION_MESSAGE = (  # the wording API Gateway uses today (aws-cloudformation/rain#163)
    "The role ARN does not have required permissions configured. Please grant trust permission for API "
    "Gateway and add the required role policy."
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def stubbed_setup(refusals: int | None) -> tuple[Any, Any, list[Stubber]]:
    """GetAccount: unset; the shared role is new; UpdateAccount refuses it `refusals` times (None: always)."""
    apigateway, iam = client("apigateway"), client("iam")
    api_stub, iam_stub = Stubber(apigateway), Stubber(iam)
    api_stub.add_response("get_account", {})
    iam_stub.add_client_error(
        "get_role", "NoSuchEntity", "cannot be found", expected_params={"RoleName": ROLE_NAME}
    )
    role = {
        "Path": "/",
        "RoleName": ROLE_NAME,
        "RoleId": "AROAEXAMPLEEXAMPLE01",
        "Arn": SHARED_ROLE_ARN,
        "CreateDate": "2026-01-01T00:00:00Z",
        "AssumeRolePolicyDocument": urllib.parse.quote(json.dumps(APIGATEWAY_TRUST)),
    }
    iam_stub.add_response("create_role", {"Role": role})
    iam_stub.add_response("attach_role_policy", {}, {"RoleName": ROLE_NAME, "PolicyArn": MANAGED_POLICY_ARN})
    for _ in range(refusals if refusals is not None else 100):
        api_stub.add_client_error("update_account", "BadRequestException", PROPAGATION_MESSAGE, 400)
    if refusals is not None:
        api_stub.add_response("update_account", {"cloudwatchRoleArn": SHARED_ROLE_ARN})
    return apigateway, iam, [api_stub, iam_stub]


def ensure(apigateway: Any, iam: Any, clock: FakeClock, budget: float = 120.0) -> handler.Outcome:
    return handler.ensure_logging_role(
        apigateway,
        iam,
        role_name=ROLE_NAME,
        policy_arn=MANAGED_POLICY_ARN,
        description="d",
        tags=[],
        deadline=clock() + budget,
        sleep=clock.sleep,
        clock=clock,
    )


def test_iam_propagation_is_waited_for(aws: None) -> None:
    apigateway, iam, stubs = stubbed_setup(refusals=3)
    clock = FakeClock()
    with stubs[0], stubs[1]:
        outcome = ensure(apigateway, iam, clock)
    for stub in stubs:
        stub.assert_no_pending_responses()
    assert outcome == handler.Outcome(SHARED_ROLE_ARN, "set")
    assert clock.sleeps == [1.0, 2.0, 4.0], "exponential backoff between refusals"


def test_iam_propagation_wait_is_bounded_then_fails_clearly(aws: None) -> None:
    apigateway, iam, stubs = stubbed_setup(refusals=None)
    clock = FakeClock()
    with stubs[0], stubs[1], pytest.raises(handler.SetupError) as raised:
        ensure(apigateway, iam, clock, budget=60.0)
    assert sum(clock.sleeps) <= 60.0 and max(clock.sleeps) == 10.0
    message = str(raised.value)
    assert f"API Gateway still refuses {SHARED_ROLE_ARN} after" in message
    assert PROPAGATION_MESSAGE in message and "deploy again" in message


def test_budget_leaves_time_to_answer_cloudformation(aws: None, resource_properties: dict[str, Any]) -> None:
    """With 40 s left in the invocation, the retries stop after at most 40 - 15 s and FAILED is sent."""
    apigateway, iam, stubs = stubbed_setup(refusals=None)
    clock, recorded = FakeClock(), Recorded()
    with stubs[0], stubs[1]:
        handler.on_event(
            event("Create", resource_properties),
            FakeContext(remaining_ms=40_000),
            clients={"apigateway": apigateway, "iam": iam}.__getitem__,
            send=recorded.send,
            sleep=clock.sleep,
            clock=clock,
        )
    assert sum(clock.sleeps) <= 40 - handler.RESPONSE_MARGIN_SECONDS
    assert recorded.response["Status"] == "FAILED" and "still refuses" in recorded.response["Reason"]


def test_other_refusals_are_not_mistaken_for_propagation(aws: None) -> None:
    apigateway, iam, stubs = stubbed_setup(refusals=0)
    stubs[0] = Stubber(apigateway)  # replace the API Gateway script: a different BadRequest
    stubs[0].add_response("get_account", {})
    stubs[0].add_client_error("update_account", "BadRequestException", "Invalid ARN specified", 400)
    clock = FakeClock()
    with stubs[0], stubs[1], pytest.raises(ClientError, match="Invalid ARN specified"):
        ensure(apigateway, iam, clock)
    assert clock.sleeps == []


# --- trust policy parsing (input from IAM) ------------------------------------------------------------
def test_trust_policy_is_read_in_both_forms_iam_returns() -> None:
    assert handler.trusts_apigateway(APIGATEWAY_TRUST)
    assert handler.trusts_apigateway(urllib.parse.quote(json.dumps(APIGATEWAY_TRUST)))
    assert not handler.trusts_apigateway(LAMBDA_TRUST)
    listed = copy.deepcopy(APIGATEWAY_TRUST)
    listed["Statement"][0]["Principal"]["Service"] = ["lambda.amazonaws.com", "apigateway.amazonaws.com"]
    listed["Statement"][0]["Action"] = ["sts:AssumeRole", "sts:TagSession"]
    assert handler.trusts_apigateway(listed)
    denied = copy.deepcopy(APIGATEWAY_TRUST)
    denied["Statement"][0]["Effect"] = "Deny"
    assert not handler.trusts_apigateway(denied)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


@given(JSON | st.text(max_size=200))
def test_any_document_gives_an_answer_never_an_exception(document: Any) -> None:
    assert handler.trusts_apigateway(document) in (True, False)


# --- least privilege: the handler's calls against its role in the template ----------------------------
def needs(service: str, operation: str, params: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(IAM action, resource ARN, request context) each recorded call needs."""
    account = f"arn:aws:apigateway:{REGION}::/account"
    if service == "apigateway":
        action = {"GetAccount": "apigateway:GET", "UpdateAccount": "apigateway:PATCH"}[operation]
        found: list[tuple[str, str, dict[str, str]]] = [(action, account, {})]
        for patch in params.get("patchOperations", []):  # setting a role passes it to API Gateway
            found.append(
                ("iam:PassRole", patch["value"], {"iam:PassedToService": "apigateway.amazonaws.com"})
            )
        return found
    role = f"arn:aws:iam::{ACCOUNT}:role/{params['RoleName']}"
    if operation == "CreateRole" and params.get("Tags"):
        return [("iam:CreateRole", role, {}), ("iam:TagRole", role, {})]  # tags on create need TagRole
    if operation == "AttachRolePolicy":
        return [("iam:AttachRolePolicy", role, {"iam:PolicyARN": params["PolicyArn"]})]
    return [(f"iam:{operation}", role, {})]


def allowed(statements: list[dict[str, Any]], action: str, resource: str, context: dict[str, str]) -> bool:
    def matches(pattern: str, value: str) -> bool:
        return fnmatch.fnmatchcase(value, pattern)

    def condition_holds(condition: dict[str, Any]) -> bool:
        for operator, tests in condition.items():
            for key, expected in tests.items():
                if key not in context:
                    return False
                values = expected if isinstance(expected, list) else [expected]
                if operator in ("StringEquals", "ArnEquals") and context[key] not in values:
                    return False
                if operator in ("StringLike", "ArnLike") and not any(
                    matches(v, context[key]) for v in values
                ):
                    return False
                if operator not in ("StringEquals", "ArnEquals", "StringLike", "ArnLike"):
                    raise AssertionError(f"teach this test the {operator} operator")
        return True

    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        if (
            statement["Effect"] == "Allow"
            and action in actions
            and any(matches(pattern, resource) for pattern in resources)
            and condition_holds(statement.get("Condition", {}))
        ):
            return True
    return False


def provider_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    _, resource = only(template, RESOURCE_TYPE)
    function = target(props(resource)["ServiceToken"])
    role = target(props(template["Resources"][function])["Role"])
    assert role is not None
    resolved: list[dict[str, Any]] = Resolver(template)(role_statements(template, role))
    return resolved


def denied_calls(recorded: list[Recorded], statements: list[dict[str, Any]]) -> list[str]:
    return [
        f"{action} on {resource} {context}"
        for scenario in recorded
        for service, operation, params in scenario.calls
        for action, resource, context in needs(service, operation, params)
        if not allowed(statements, action, resource, context)
    ]


@pytest.fixture
def every_path(aws: None, resource_properties: dict[str, Any]) -> list[Recorded]:
    """Create (unset -> new role, set), Update (working role kept), a stale role repaired, Delete."""
    first = run("Create", resource_properties)
    kept = run("Update", resource_properties, handler.PHYSICAL_RESOURCE_ID)
    set_account_role(f"arn:aws:iam::{ACCOUNT}:role/gone")
    repaired = run("Update", resource_properties, handler.PHYSICAL_RESOURCE_ID)
    deleted = run("Delete", resource_properties, handler.PHYSICAL_RESOURCE_ID)
    scenarios = [first, kept, repaired, deleted]
    assert [s.response["Status"] for s in scenarios] == ["SUCCESS"] * 4
    return scenarios


def test_every_call_is_allowed_by_the_providers_role(
    every_path: list[Recorded], templates: Mapping[str, dict[str, Any]]
) -> None:
    operations = {op for scenario in every_path for op in scenario.operations}
    assert operations == {
        "apigateway:GetAccount",
        "apigateway:UpdateAccount",
        "iam:GetRole",
        "iam:CreateRole",
        "iam:AttachRolePolicy",
    }
    assert denied_calls(every_path, provider_statements(templates["dev"])) == []


@pytest.mark.parametrize(
    "sid", ["PassItOnlyToApiGateway", "AttachOnlyTheLoggingPolicy", "CreateTheSharedRole"]
)
def test_the_check_fails_without_a_grant(
    sid: str, every_path: list[Recorded], templates: Mapping[str, dict[str, Any]]
) -> None:
    statements = [s for s in provider_statements(templates["dev"]) if s.get("Sid") != sid]
    assert denied_calls(every_path, statements), f"removing {sid} must deny a call"


def test_pass_role_is_only_for_api_gateway(templates: Mapping[str, dict[str, Any]]) -> None:
    statements = provider_statements(templates["dev"])
    assert allowed(
        statements, "iam:PassRole", SHARED_ROLE_ARN, {"iam:PassedToService": "apigateway.amazonaws.com"}
    )
    assert not allowed(
        statements, "iam:PassRole", SHARED_ROLE_ARN, {"iam:PassedToService": "ec2.amazonaws.com"}
    )
    assert not allowed(
        statements,
        "iam:AttachRolePolicy",
        SHARED_ROLE_ARN,
        {"iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess"},
    )
    assert not allowed(statements, "iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/anything-else", {})


# --- the local runtime --------------------------------------------------------------------------------
def test_local_runtime_reports_the_resource_as_aws_only(templates: Mapping[str, dict[str, Any]]) -> None:
    local = Template(copy.deepcopy(templates["local"]), None, "rtp-local", REGION)
    notes = local.check_supported()
    assert any(note.type == RESOURCE_TYPE and note.message.startswith("AWS-only") for note in notes)
    unknown = copy.deepcopy(templates["local"])
    unknown["Resources"]["Other"] = {"Type": "Custom::SomethingElse", "Properties": {}}
    with pytest.raises(
        TemplateError, match=r"Other \(Custom::SomethingElse\): resource type not implemented"
    ):
        Template(unknown, None, "rtp-local", REGION).check_supported()


def test_local_runtime_creates_the_execution_log_group_named_after_its_api(
    aws: None, templates: Mapping[str, dict[str, Any]]
) -> None:
    local = Template(copy.deepcopy(templates["local"]), None, "rtp-local", REGION)
    provision(local, client)
    api_id, _ = only(local.document, "AWS::ApiGateway::RestApi")
    groups = {g["logGroupName"] for g in client("logs").describe_log_groups()["logGroups"]}
    assert f"API-Gateway-Execution-Logs_{local.refs[api_id]}/v1" in groups
