"""The inner-loop commands through Typer's runner: `rtp deploy --hotswap` and `rtp watch` by the exact CDK
CLI invocation they build and their production refusal; `rtp invoke` against AWS (botocore Stubber on
`lambda:Invoke`), its refusals, and the events it generates from a template (moto for S3/DynamoDB/STS)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from typer.testing import CliRunner

import rtp_cli.app as cli
from rtp_cli import cdk as cdk_service
from rtp_cli import gate
from rtp_cli import invoke as invoke_service
from rtp_cli.target import Target, TargetError
from stack.config import load_config
from tests.cli.fakes import FakeCdk
from tests.tiers import examples

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
OUTPUTS = {
    "ApiUrl": "https://abc123defg.execute-api.eu-west-1.amazonaws.com/v1/",
    "IngestFunctionName": "rtp-dev-FunctionsIngest-AAAA",
    "ProcessorFunctionName": "rtp-dev-FunctionsProcessor-BBBB",
    "QueryFunctionName": "rtp-dev-FunctionsQuery-CCCC",
    "RawBucketName": "rtp-dev-raw-bucket",
    "TableName": "rtp-dev-table",
    "WorkQueueUrl": "https://sqs.eu-west-1.amazonaws.com/111122223333/rtp-dev-WorkQueue",
}


@pytest.fixture
def no_gate(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    runs: list[list[str]] = []

    def run_gate(environments: list[str], **_: Any) -> gate.GateReport:
        runs.append(environments)
        return gate.GateReport(environments)

    monkeypatch.setattr(gate, "run_gate", run_gate)
    return runs


# ---- rtp deploy --hotswap / rtp watch ------------------------------------------------------------------
def test_hotswap_builds_the_pinned_cdk_deploy_hotswap_invocation(
    fake_cdk: FakeCdk, signed_in: list[Any], no_gate: list[Any]
) -> None:
    result = runner.invoke(cli.app, ["deploy", "--env", "dev", "--hotswap", "--profile", "sandbox"])
    assert result.exit_code == 0, result.output
    assert fake_cdk.calls == [
        [
            "npx", "--no-install", "cdk", "deploy", "rtp-dev", "--app", "python3 main.py", "-c", "env=dev",
            "--require-approval", "never",
            "--outputs-file", str(ROOT / ".rtp" / "outputs-dev.json"),
            "--progress", "events",
            "--hotswap",
            "--profile", "sandbox",
        ]
    ]  # fmt: skip
    assert signed_in == [("sandbox", None)]  # credentials and the account pin are checked first
    assert no_gate == []  # code only: the gate runs on the full `rtp deploy`


def test_watch_builds_the_pinned_cdk_watch_invocation(fake_cdk: FakeCdk, signed_in: list[Any]) -> None:
    result = runner.invoke(cli.app, ["watch", "--env", "staging"])
    assert result.exit_code == 0, result.output
    assert fake_cdk.calls == [
        ["npx", "--no-install", "cdk", "watch", "rtp-staging", "--app", "python3 main.py",
         "-c", "env=staging", "--hotswap"]
    ]  # fmt: skip
    result = runner.invoke(cli.app, ["watch", "--env", "dev", "--no-logs", "--profile", "p"])
    assert result.exit_code == 0, result.output
    assert fake_cdk.calls[-1][-4:] == ["--hotswap", "--no-logs", "--profile", "p"]


@pytest.mark.parametrize("args", [["deploy", "--env", "prod", "--hotswap"], ["watch", "--env", "prod"]])
def test_hotswap_and_watch_are_refused_for_prod_because_of_drift(
    args: list[str], fake_cdk: FakeCdk, signed_in: list[Any]
) -> None:
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 2, result.output
    assert "drift" in result.output and "rtp deploy --env prod" in result.output
    assert fake_cdk.calls == [] and signed_in == []  # refused before any AWS call or CDK process


def test_the_cdk_command_builder_itself_refuses_prod() -> None:
    prod = load_config("prod")
    with pytest.raises(cdk_service.HotswapRefusedError, match="drift"):
        cdk_service.cdk_command("deploy", prod, hotswap=True)
    with pytest.raises(cdk_service.HotswapRefusedError):
        cdk_service.cdk_command("watch", prod)
    assert "--hotswap" not in cdk_service.cdk_command("deploy", prod)  # a full deploy of prod is fine


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deploy", "--env", "local", "--hotswap"], "locally use --watch"),
        (["deploy", "--env", "dev", "--watch"], "rtp watch --env dev"),
        (["deploy", "--env", "local", "--watch", "--detach"], "foreground"),
        (["watch", "--env", "local"], "rtp deploy --env local --watch"),
    ],
)
def test_the_loop_options_point_to_the_right_command(
    args: list[str], message: str, fake_cdk: FakeCdk, signed_in: list[Any]
) -> None:
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert fake_cdk.calls == []


def test_cdk_watch_watches_the_project_sources() -> None:
    """`cdk watch` reads its file list from cdk.json: code, constructs and config, not tests or output."""
    watch = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["watch"]
    assert {"handlers/**", "stack/**", "config/**", "main.py"} <= set(watch["include"])
    assert "tests/**" in watch["exclude"] and "cdk.out/**" in watch["exclude"]


# ---- rtp invoke: refusals ------------------------------------------------------------------------------
@pytest.fixture
def no_target(monkeypatch: pytest.MonkeyPatch) -> None:
    def resolve(env: str, profile: str | None = None) -> Target:
        raise AssertionError("no environment may be contacted before the refusal")

    monkeypatch.setattr("rtp_cli.target.resolve_target", resolve)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["invoke", "ingest", "--env", "prod", "--generate", "api"], "--yes-prod"),
        (["invoke", "nosuch", "--event", "-"], "choose from ingest, processor, query"),
        (["invoke", "ingest"], "--event FILE|- or --generate"),
        (["invoke", "ingest", "--event", "e.json", "--generate", "api"], "one of them"),
        (["invoke", "ingest", "--event", "e.json", "--print"], "--print shows a generated event"),
    ],
)
def test_invoke_refusals(args: list[str], message: str, no_target: None) -> None:
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_invoke_prod_needs_a_person_to_type_the_name(
    monkeypatch: pytest.MonkeyPatch, no_target: None
) -> None:
    args = ["invoke", "query", "--env", "prod", "--generate", "api", "--yes-prod"]
    monkeypatch.setattr(cli, "interactive", lambda: False)
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 2 and "needs a person" in result.output
    monkeypatch.setattr(cli, "interactive", lambda: True)
    result = runner.invoke(cli.app, args, input="dev\n")
    assert result.exit_code == 2 and "did not match; nothing was invoked" in result.output


def test_invoke_local_when_not_running() -> None:
    result = runner.invoke(cli.app, ["invoke", "ingest", "--generate", "api"])
    assert result.exit_code == 2
    assert "not running" in result.output


# ---- rtp invoke against AWS: lambda:Invoke with LogType=Tail ---------------------------------------------
def _target(env: str = "dev") -> Target:
    session = boto3.Session(
        aws_access_key_id="AKIAEXAMPLEKEY000001",
        aws_secret_access_key="real-secret-never-in-events",
        aws_session_token="SESSION-TOKEN-NEVER-IN-EVENTS",
        region_name="eu-west-1",
    )
    return Target(env, OUTPUTS["ApiUrl"], "eu-west-1", dict(OUTPUTS), session, stack_name=f"rtp-{env}")


def _lambda_response(payload: Any, log: str, function_error: str | None = None) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    response: dict[str, Any] = {
        "StatusCode": 200,
        "Payload": StreamingBody(io.BytesIO(body), len(body)),
        "LogResult": base64.b64encode(log.encode()).decode(),
        "ExecutedVersion": "$LATEST",
    }
    if function_error:
        response["FunctionError"] = function_error
    return response


REPORT = (
    "REPORT RequestId: 1f\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 256 MB\t"
    "Init Duration: 301.50 ms"
)


@pytest.fixture
def stubbed_lambda(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    client = boto3.client("lambda", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y")
    stubber = Stubber(client)
    monkeypatch.setattr(invoke_service, "make_lambda_client", lambda target: client)
    with stubber:
        yield stubber


def test_invoke_aws_calls_the_deployed_function_with_the_log_tail(
    monkeypatch: pytest.MonkeyPatch, stubbed_lambda: Stubber, tmp_path: Path
) -> None:
    event: dict[str, Any] = {"Records": []}
    (tmp_path / "event.json").write_text(json.dumps(event), encoding="utf-8")
    stubbed_lambda.add_response(
        "invoke",
        _lambda_response(
            {"batchItemFailures": []}, f"START RequestId: 1f\nhello from the handler\n{REPORT}\n"
        ),
        {
            "FunctionName": OUTPUTS["ProcessorFunctionName"],
            "InvocationType": "RequestResponse",
            "LogType": "Tail",
            "Payload": json.dumps(event, separators=(",", ":")).encode(),
        },
    )
    monkeypatch.setattr("rtp_cli.target.resolve_target", lambda env, profile=None: _target(env))
    result = runner.invoke(
        cli.app, ["invoke", "processor", "--env", "dev", "--event", str(tmp_path / "event.json")]
    )
    assert result.exit_code == 0, result.output
    assert "hello from the handler" in result.output and "duration 12.3 ms" in result.output
    assert "cold start, init 302 ms" in result.output
    stubbed_lambda.assert_no_pending_responses()


def test_invoke_aws_function_error_exits_1(monkeypatch: pytest.MonkeyPatch, stubbed_lambda: Stubber) -> None:
    error = {"errorType": "KeyError", "errorMessage": "'Records'", "stackTrace": []}
    stubbed_lambda.add_response(
        "invoke", _lambda_response(error, f"[ERROR] KeyError\n{REPORT}\n", "Unhandled")
    )
    monkeypatch.setattr("rtp_cli.target.resolve_target", lambda env, profile=None: _target(env))
    result = runner.invoke(
        cli.app, ["invoke", "processor", "--env", "dev", "--event", "-", "--json"], input="{}"
    )
    assert result.exit_code == 1, result.output
    shown = json.loads(result.output)
    assert (shown["ok"], shown["errorType"], shown["errorMessage"]) == (False, "KeyError", "'Records'")
    assert shown["logs"][0] == "[ERROR] KeyError" and shown["durationMs"] == 12.34


def test_invoke_prod_after_both_confirmations(
    monkeypatch: pytest.MonkeyPatch, stubbed_lambda: Stubber, tmp_path: Path
) -> None:
    prod_outputs = {**OUTPUTS, "QueryFunctionName": "rtp-prod-FunctionsQuery-DDDD"}
    target = _target("prod")
    target.outputs = prod_outputs
    monkeypatch.setattr("rtp_cli.target.resolve_target", lambda env, profile=None: target)
    monkeypatch.setattr(cli, "interactive", lambda: True)
    stubbed_lambda.add_response(
        "invoke",
        _lambda_response({"statusCode": 404, "body": "{}"}, REPORT),
        {"FunctionName": "rtp-prod-FunctionsQuery-DDDD", "InvocationType": "RequestResponse",
         "LogType": "Tail", "Payload": b"{}"},
    )  # fmt: skip
    (tmp_path / "e.json").write_text("{}", encoding="utf-8")
    result = runner.invoke(
        cli.app,
        ["invoke", "query", "--env", "prod", "--event", str(tmp_path / "e.json"), "--yes-prod"],
        input="prod\n",
    )
    assert result.exit_code == 0, result.output
    stubbed_lambda.assert_no_pending_responses()


def test_an_event_over_the_synchronous_payload_limit_is_refused_before_the_call(tmp_path: Path) -> None:
    limit = invoke_service.SYNC_PAYLOAD_LIMIT_BYTES
    invoke_service.encode_event({"x": "a" * (limit - 10)})  # just under: fine
    with pytest.raises(invoke_service.InvokeError, match="at most 6291456 bytes"):
        invoke_service.invoke(_target(), "ingest", {"x": "a" * limit}, lambda_client=object())


@settings(max_examples=examples(40), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
)
def test_read_event_round_trips_any_json(value: Any, tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(value), encoding="utf-8")
    assert invoke_service.read_event(str(path)) == value
    assert invoke_service.read_event("-", io.StringIO(json.dumps(value))) == value


@settings(max_examples=examples(40))
@given(text=st.text(max_size=40).filter(lambda t: not _is_json(t)))
def test_read_event_refuses_what_is_not_json_with_a_clear_error(text: str) -> None:
    with pytest.raises(invoke_service.InvokeError, match="is not JSON"):
        invoke_service.read_event("-", io.StringIO(text))


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# ---- events generated from the template -------------------------------------------------------------
@pytest.fixture
def aws_data(monkeypatch: pytest.MonkeyPatch, templates: Mapping[str, dict[str, Any]]) -> Iterator[Target]:
    """An AWS environment's bucket and table (moto), with one raw request and its batch item."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        target = _target("dev")
        s3 = target.client("s3")
        s3.create_bucket(
            Bucket=OUTPUTS["RawBucketName"], CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        target.client("dynamodb").create_table(
            TableName=OUTPUTS["TableName"],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        monkeypatch.setattr(invoke_service, "template_document", lambda t: templates["dev"])
        yield target


def _store_batch(target: Target, batch_id: str, received: datetime) -> str:
    storage = invoke_service._storage()
    key = f"raw/{received:%Y/%m/%d/%H}/{batch_id}.json"
    target.client("s3").put_object(Bucket=OUTPUTS["RawBucketName"], Key=key, Body=b'{"type":"t","data":{}}')
    claim = storage.ClaimCheck(batch_id, OUTPUTS["RawBucketName"], key, "corr-1", received.isoformat(), 2)
    storage.PipelineTable(target.client("dynamodb"), OUTPUTS["TableName"]).create_batch(
        claim, [f"{batch_id}-0", f"{batch_id}-1"], received + timedelta(days=1), received
    )
    return key


def test_generated_sqs_event_carries_a_claim_check_to_the_newest_raw_object(aws_data: Target) -> None:
    now = datetime.now(UTC)
    _store_batch(aws_data, "01OLDERBATCH", now.replace(year=now.year - 1))  # outside the look-back
    key = _store_batch(aws_data, "01NEWESTBATCH", now)
    generated = invoke_service.generate(aws_data, "processor", "sqs")
    (record,) = generated.event["Records"]
    claim = invoke_service._storage().ClaimCheck.from_json(record["body"])  # the processor's own parser
    assert (claim.batch_id, claim.bucket, claim.key, claim.record_count) == (
        "01NEWESTBATCH", OUTPUTS["RawBucketName"], key, 2,
    )  # fmt: skip
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == "arn:aws:sqs:eu-west-1:111122223333:rtp-dev-WorkQueue"


def test_no_raw_object_in_aws_is_a_clear_error(aws_data: Target) -> None:
    with pytest.raises(invoke_service.InvokeError, match="send one first"):
        invoke_service.generate(aws_data, "processor", "sqs")


def test_generated_api_event_is_valid_and_carries_no_usable_credentials(aws_data: Target) -> None:
    from jsonschema import Draft4Validator  # type: ignore[import-untyped]

    from rtp_cli.local.sigv4 import AuthFailure, verify

    generated = invoke_service.generate(aws_data, "ingest", "api")
    event = generated.event
    assert (event["httpMethod"], event["resource"], event["path"]) == ("POST", "/records", "/records")
    document = invoke_service.template_document(aws_data)
    sources = invoke_service.event_sources(document, invoke_service.function_logical_id(document, "ingest"))
    route = sources["api"][0]
    assert route.model is not None
    assert list(Draft4Validator(route.model).iter_errors(json.loads(event["body"]))) == []
    headers = event["headers"]
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAEXAMPLEKEY000001/")
    assert not any(name.lower() == "x-amz-security-token" for name in headers)
    assert "SESSION-TOKEN" not in json.dumps(event) and "real-secret" not in json.dumps(event)
    # it looks signed, but the signature does not verify with the caller's real secret
    outcome = verify(
        "POST",
        f"https://{headers['Host']}/v1/records",
        list(headers.items()),
        event["body"].encode(),
        access_key="AKIAEXAMPLEKEY000001",
        secret_key="real-secret-never-in-events",
        region="eu-west-1",
    )
    assert isinstance(outcome, AuthFailure)
    context = event["requestContext"]
    assert (context["apiId"], context["stage"], context["accountId"]) == ("abc123defg", "v1", "123456789012")


def test_generated_query_event_names_a_stored_record(aws_data: Target) -> None:
    _store_batch(aws_data, "01QUERYBATCH", datetime.now(UTC))
    event = invoke_service.generate(aws_data, "query", "api").event
    assert (event["httpMethod"], event["resource"]) == ("GET", "/records/{id}")
    assert event["pathParameters"] == {"id": "01QUERYBATCH-0"} and event["path"] == "/records/01QUERYBATCH-0"
    batches = invoke_service.generate(aws_data, "query", "api", "get /batches/{batchId}").event
    assert batches["pathParameters"] == {"batchId": "01QUERYBATCH"}
    with pytest.raises(
        invoke_service.InvokeError,
        match=r"serves GET /records/\{id\}, GET /records, GET /batches/\{batchId\}",
    ):
        invoke_service.generate(aws_data, "query", "api", "DELETE /records/{id}")


def test_generate_refuses_the_wrong_trigger(aws_data: Target) -> None:
    with pytest.raises(invoke_service.InvokeError, match="use --generate sqs"):
        invoke_service.generate(aws_data, "processor", "api")
    with pytest.raises(invoke_service.InvokeError, match="use --generate api"):
        invoke_service.generate(aws_data, "ingest", "sqs")


def test_an_unreachable_function_output_is_a_target_error() -> None:
    target = _target()
    target.outputs = {"ApiUrl": OUTPUTS["ApiUrl"]}
    with pytest.raises(TargetError, match="has no output 'IngestFunctionName'"):
        invoke_service.function_name(target, "ingest")


def test_the_lambda_client_never_retries_an_invocation_and_waits_for_the_longest_timeout() -> None:
    client = invoke_service.make_lambda_client(_target())
    assert client.meta.config.retries["total_max_attempts"] == 1  # a retry would run the function twice
    assert client.meta.config.read_timeout >= 900  # Lambda's longest function timeout


@pytest.mark.parametrize("command", ["invoke", "watch"])
def test_the_loop_commands_have_help(command: str) -> None:
    result = runner.invoke(cli.app, [command, "--help"])
    assert result.exit_code == 0 and "--env" in result.output
