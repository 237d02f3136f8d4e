"""Who may assume the API Gateway logging role: `trusts_apigateway`, the one verdict the account-role custom
resource (stack/custom_resources/api_gateway_account/handler.py) and `rtp doctor` share.

A trust policy comes from IAM, written by anyone: every shape must get an answer (never an exception), and
the answer must follow IAM's rules as far as the function claims to. No CDK here (fast tier): the handler
module is plain boto3.
"""

from __future__ import annotations

import copy
import json
import random
import urllib.parse
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.custom_resources.api_gateway_account import handler
from stack.custom_resources.api_gateway_account.handler import APIGATEWAY_PRINCIPAL, trusts_apigateway
from tests.tiers import examples

TRUSTING = {"Effect": "Allow", "Principal": {"Service": APIGATEWAY_PRINCIPAL}, "Action": "sts:AssumeRole"}
DENYING = {"Effect": "Deny", "Principal": {"Service": APIGATEWAY_PRINCIPAL}, "Action": "sts:AssumeRole"}
OTHER_SERVICES = ["lambda.amazonaws.com", "states.amazonaws.com", "apigateway.amazonaws.com.evil", ""]

# --- policy-shaped input: the shapes IAM documents allow, and ones it does not --------------------------
SCALAR = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
ACTION = (
    st.sampled_from(
        [
            *("sts:AssumeRole", "STS:assumerole", "sts:*", "*", "sts:Assume*", "sts:AssumeRol?"),
            *("sts:TagSession", "sts:AssumeRoleWithSAML", "iam:*", "sts:Assume", "sts:[A]ssumeRole"),
        ]
    )
    | SCALAR
)
SERVICE = st.sampled_from([APIGATEWAY_PRINCIPAL, *OTHER_SERVICES]) | SCALAR
PRINCIPAL = (
    st.just("*")
    | SCALAR
    | st.fixed_dictionaries({"Service": SERVICE | st.lists(SERVICE, max_size=3)})
    | st.fixed_dictionaries({"AWS": st.just("*") | st.lists(st.just("*") | SCALAR, max_size=2)})
    | st.lists(SCALAR, max_size=2)
)


@st.composite
def statements(draw: st.DrawFn, effects: list[str] | None = None) -> Any:
    statement: dict[str, Any] = {}
    for key, values in (
        (
            "Effect",
            st.sampled_from(effects) if effects else st.sampled_from(["Allow", "Deny", "allow"]) | SCALAR,
        ),
        ("Principal", PRINCIPAL),
        ("Action", ACTION | st.lists(ACTION, max_size=3)),
        ("NotAction", ACTION | st.lists(ACTION, max_size=2)),
        ("Condition", st.dictionaries(st.text(max_size=5), SCALAR, max_size=2)),
    ):
        if draw(st.booleans()) or (key in ("Effect", "Principal") and effects):
            statement[key] = draw(values)
    return statement if effects else draw(st.just(statement) | SCALAR | st.lists(SCALAR, max_size=2))


def policy(statement_list: Any) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statement_list}


POLICIES = st.builds(policy, st.lists(statements(), max_size=4) | statements()) | st.fixed_dictionaries(
    {"Version": st.just("2012-10-17")}  # no Statement at all
)
ANY_JSON = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=9), inner, max_size=3),
)


def mentions_apigateway(value: Any) -> bool:
    return APIGATEWAY_PRINCIPAL in json.dumps(value)


# Each property is cheap to state: 50 shapes apiece in `make test` (a tenth in the fast tier).
FEW = settings(max_examples=examples(50))


# --- no shape crashes it --------------------------------------------------------------------------------
@given(POLICIES | ANY_JSON | st.text(max_size=120))
def test_every_shape_gets_an_answer(document: Any) -> None:
    assert trusts_apigateway(document) in (True, False)
    if isinstance(document, dict):  # as IAM returns it: URL-encoded JSON
        assert trusts_apigateway(urllib.parse.quote(json.dumps(document))) == trusts_apigateway(document)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (policy([TRUSTING]), True),
        (policy(TRUSTING), True),  # one statement, not a list
        (
            policy([{**TRUSTING, "Principal": {"Service": ["lambda.amazonaws.com", APIGATEWAY_PRINCIPAL]}}]),
            True,
        ),
        (policy([{**TRUSTING, "Action": ["sts:TagSession", "STS:ASSUMEROLE"]}]), True),  # case-insensitive
        (policy([{**TRUSTING, "Action": "sts:Assume*"}]), True),
        (policy([{**{k: v for k, v in TRUSTING.items() if k != "Action"}, "NotAction": "iam:*"}]), True),
        (policy([{**{k: v for k, v in TRUSTING.items() if k != "Action"}, "NotAction": "sts:*"}]), False),
        (policy([{**TRUSTING, "Principal": "*"}]), False),  # a wildcard is not a trust in API Gateway
        (policy([{**TRUSTING, "Principal": {"AWS": "*"}}]), False),
        (policy([{**TRUSTING, "Principal": APIGATEWAY_PRINCIPAL}]), False),  # not IAM's shape
        (policy([{**TRUSTING, "Action": "sts:AssumeRoleWithSAML"}]), False),
        (policy([{**TRUSTING, "Action": "sts:[A]ssumeRole"}]), False),  # IAM has no [] wildcard
        (policy([{k: v for k, v in TRUSTING.items() if k != "Action"}]), False),  # no action granted
        (policy([{**TRUSTING, "Effect": "allow"}]), False),
        (policy([TRUSTING, DENYING]), False),  # an explicit deny wins
        (policy([TRUSTING, {**DENYING, "Principal": "*"}]), False),
        (policy([TRUSTING, {**DENYING, "Action": "sts:TagSession"}]), True),  # denies something else
        ({"Version": "2012-10-17"}, False),  # no Statement
        (policy("sts:AssumeRole"), False),
        ("not json", False),
        ("[" * 100_000, False),  # nesting deeper than the parser goes
        ([TRUSTING], False),
        (None, False),
    ],
)
def test_documented_shapes(document: Any, expected: bool) -> None:
    assert trusts_apigateway(document) is expected


# --- the verdict follows the rules --------------------------------------------------------------------
@FEW
@given(st.lists(statements(effects=["Allow"]), max_size=4), st.randoms(use_true_random=False))
def test_a_trusting_statement_among_allows_is_trusted_in_any_order(
    others: list[Any], rng: random.Random
) -> None:
    listed = [*others, TRUSTING]
    rng.shuffle(listed)
    assert trusts_apigateway(policy(listed))


@FEW
@given(POLICIES)
def test_an_explicit_deny_always_wins(document: dict[str, Any]) -> None:
    denied = copy.deepcopy(document)
    existing = denied.get("Statement", [])
    denied["Statement"] = [*(existing if isinstance(existing, list) else [existing]), DENYING, TRUSTING]
    assert not trusts_apigateway(denied)


@FEW
@given(POLICIES)
def test_no_trust_without_naming_the_service(document: dict[str, Any]) -> None:
    if not mentions_apigateway(document):
        assert not trusts_apigateway(document)


@FEW
@given(POLICIES)
def test_statement_order_does_not_matter(document: dict[str, Any]) -> None:
    listed = document.get("Statement")
    if isinstance(listed, list):
        reversed_document = {**document, "Statement": list(reversed(listed))}
        assert trusts_apigateway(reversed_document) == trusts_apigateway(document)


# --- the handler's AWS clients: bounded calls inside CloudFormation's window -------------------------
def worst_call_seconds(config: Any) -> float:
    """One API call's longest run under `config`: every attempt connects and reads to its timeout, plus
    standard mode's backoff (random up to 2^attempt seconds, before each retry)."""
    attempts = int(config.retries["total_max_attempts"])  # the first attempt included
    return attempts * (config.connect_timeout + config.read_timeout) + sum(2**n for n in range(attempts - 1))


def lambda_timeout(template: Mapping[str, Any]) -> int:
    (resource,) = [
        r for r in template["Resources"].values() if r["Type"] == "Custom::ApiGatewayAccountLogging"
    ]
    provider = resource["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    return int(template["Resources"][provider]["Properties"]["Timeout"])


def test_handler_clients_have_explicit_timeouts_and_retries(
    monkeypatch: pytest.MonkeyPatch, cached_templates: Mapping[str, dict[str, Any]]
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    config = handler._client("iam").meta.config  # what the Lambda function's calls actually run with
    assert config.retries["mode"] == "standard"
    # A call cannot outlast a third of the function's time: the function still answers CloudFormation.
    timeout = lambda_timeout(cached_templates["local"])  # the same construct in every environment
    assert worst_call_seconds(config) <= timeout / 3, (worst_call_seconds(config), timeout)


def test_botocore_defaults_would_not_fit() -> None:
    """The check above is not blind: botocore's defaults (60 s connect and read; legacy mode, 5 attempts
    for most services) let a single hung call run for ten minutes, beyond the function's timeout."""
    from botocore.config import Config

    defaults: Any = Config(retries={"total_max_attempts": 5})  # (botocore-stubs omit its attributes)
    assert (defaults.connect_timeout, defaults.read_timeout) == (60, 60)
    assert worst_call_seconds(defaults) > 180
