"""Units of the local runtime: what it honours in a template, SigV4 verification, the event source
mapping's partial-batch semantics, API routing and throttling."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from rtp_cli.local.esm import _reported_failures
from rtp_cli.local.gateway import TokenBucket, _match, _schema_errors
from rtp_cli.local.sigv4 import AuthFailure, Caller, verify
from rtp_cli.local.template import SUPPORT, Template, TemplateError

KEY, SECRET, REGION = "AKIALOCALTEST0000001", "local-secret", "us-east-1"


def _template(document: dict[str, Any]) -> Template:
    return Template(copy.deepcopy(document), Path("/nonexistent/t.json"), "rtp-local", REGION)


# ---- template support ---------------------------------------------------------------------------------
def test_every_resource_type_of_every_environment_is_accounted_for(templates: Any) -> None:
    """Each shipped environment's resource types are implemented or knowingly AWS-only (never unknown)."""
    for env in templates:
        types = {resource["Type"] for resource in templates[env]["Resources"].values()}
        assert types <= set(SUPPORT), f"{env}: {sorted(types - set(SUPPORT))}"


def test_local_template_is_honoured_and_aws_only_parts_are_reported(cached_templates: Any) -> None:
    notes = _template(cached_templates["local"]).check_supported()
    aws_only = {note.type for note in notes if note.message.startswith("AWS-only")}
    assert {"AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard", "AWS::IAM::Role"} <= aws_only
    assert any("X-Ray" in note.message for note in notes)  # TracingConfig is reported, not silently dropped


def test_unknown_types_and_properties_are_refused_by_name(cached_templates: Any) -> None:
    document = copy.deepcopy(cached_templates["local"])
    document["Resources"]["Fire"] = {"Type": "AWS::Kinesis::Firehose::DeliveryStream", "Properties": {}}
    table = next(lid for lid, r in document["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table")
    document["Resources"][table]["Properties"]["KinesisStreamSpecification"] = {"StreamArn": "x"}
    method = next(lid for lid, r in document["Resources"].items() if r["Type"] == "AWS::ApiGateway::Method")
    document["Resources"][method]["Properties"]["AuthorizationType"] = "COGNITO_USER_POOLS"
    with pytest.raises(TemplateError) as raised:
        _template(document).check_supported()
    message = str(raised.value)
    assert "Fire (AWS::Kinesis::Firehose::DeliveryStream): resource type not implemented locally" in message
    assert (
        f"{table} (AWS::DynamoDB::Table): property KinesisStreamSpecification is not implemented" in message
    )
    assert f"{method}: AuthorizationType COGNITO_USER_POOLS is not implemented locally" in message


def test_intrinsics_resolve_to_local_values() -> None:
    template = _template({"Parameters": {"P": {"Type": "String", "Default": "dflt"}}, "Resources": {}})
    template.refs["Q"] = "http://127.0.0.1:1/123456789012/q"
    template.attrs[("Q", "Arn")] = "arn:aws:sqs:us-east-1:123456789012:q"
    assert (
        template.resolve({"Fn::Join": ["/", [{"Ref": "Q"}, {"Ref": "P"}]]})
        == "http://127.0.0.1:1/123456789012/q/dflt"
    )
    assert (
        template.resolve({"Fn::Sub": "${AWS::Region}/${Q}"}) == "us-east-1/http://127.0.0.1:1/123456789012/q"
    )
    assert template.resolve({"Fn::Sub": ["${AWS::Partition}-${Q.Arn}-${V}", {"V": "v"}]}) == (
        "aws-arn:aws:sqs:us-east-1:123456789012:q-v"
    )
    with pytest.raises(TemplateError, match="Ref Missing"):
        template.resolve({"Ref": "Missing"})


# ---- SigV4 ---------------------------------------------------------------------------------------------
def _signed(
    method: str = "POST", body: bytes = b'{"a": 1}', secret: str = SECRET, region: str = REGION
) -> AWSRequest:
    request = AWSRequest(
        method=method,
        url="http://127.0.0.1:8765/v1/records?x=1&a=b",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials(KEY, secret), "execute-api", region).add_auth(request)
    return request


def _verify(
    request: AWSRequest, body: bytes = b'{"a": 1}', now: datetime | None = None
) -> Caller | AuthFailure:
    headers = [(k, v) for k, v in request.headers.items()] + [("Host", "127.0.0.1:8765")]
    return verify(
        str(request.method),
        str(request.url),
        headers,
        body,
        access_key=KEY,
        secret_key=SECRET,
        region=REGION,
        now=now,
    )


def test_sigv4_valid_signature_is_accepted() -> None:
    assert _verify(_signed()) == Caller(KEY)


@pytest.mark.parametrize(
    ("request_kwargs", "body", "expected_type", "expected_text"),
    [
        ({"secret": "wrong"}, b'{"a": 1}', "INVALID_SIGNATURE", "does not match"),
        ({}, b'{"a": 2}', "INVALID_SIGNATURE", "does not match"),  # body changed after signing
        ({"region": "eu-west-1"}, b'{"a": 1}', "DEFAULT_4XX", "scoped to a valid region"),
    ],
)
def test_sigv4_refusals(
    request_kwargs: dict[str, Any], body: bytes, expected_type: str, expected_text: str
) -> None:
    outcome = _verify(_signed(**request_kwargs), body)
    assert isinstance(outcome, AuthFailure)
    assert outcome.response_type == expected_type and expected_text in outcome.message


@pytest.mark.parametrize("stated_hash", ["sha256-of-signed-body", "UNSIGNED-PAYLOAD"])
def test_sigv4_signature_is_bound_to_the_body_received(stated_hash: str) -> None:
    """A client-stated x-amz-content-sha256 must not let a signature travel with another body."""
    signed_body = b'{"a": 1}'
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:8765/v1/records",
        data=signed_body,
        headers={
            "Content-Type": "application/json",
            "X-Amz-Content-SHA256": hashlib.sha256(signed_body).hexdigest()
            if stated_hash == "sha256-of-signed-body"
            else "UNSIGNED-PAYLOAD",
        },
    )
    SigV4Auth(Credentials(KEY, SECRET), "execute-api", REGION).add_auth(request)
    tampered = _verify(request, b'{"a": "something else"}')
    assert isinstance(tampered, AuthFailure) and tampered.response_type == "INVALID_SIGNATURE"
    honest = _verify(request, signed_body)
    if stated_hash == "UNSIGNED-PAYLOAD":
        # Verified over the real payload hash, as API Gateway does: an unsigned payload never matches.
        assert isinstance(honest, AuthFailure)
    else:
        assert honest == Caller(KEY)


def test_sigv4_missing_and_stale() -> None:
    missing = verify(
        "GET",
        "http://127.0.0.1/v1/x",
        [("Host", "127.0.0.1")],
        b"",
        access_key=KEY,
        secret_key=SECRET,
        region=REGION,
    )
    assert isinstance(missing, AuthFailure) and missing.message == "Missing Authentication Token"
    stale = _verify(_signed(), now=datetime.now(UTC) + timedelta(minutes=6))
    assert isinstance(stale, AuthFailure) and stale.message.startswith("Signature expired")
    fresh = _verify(_signed(), now=datetime.now(UTC) + timedelta(minutes=4))
    assert fresh == Caller(KEY)


# ---- event source mapping: partial batch responses -----------------------------------------------------
def test_reported_failures_follow_lambda_rules() -> None:
    ids = {"m1", "m2"}
    assert _reported_failures({"batchItemFailures": []}, ids) == set()
    assert _reported_failures(None, ids) == set()
    assert _reported_failures({"batchItemFailures": [{"itemIdentifier": "m2"}]}, ids) == {"m2"}
    assert _reported_failures({"batchItemFailures": [{"itemIdentifier": "other"}]}, ids) is None
    assert _reported_failures({"batchItemFailures": [{"itemIdentifier": ""}]}, ids) is None
    assert _reported_failures("not a dict", ids) is None


# ---- API routing, throttling, body validation ----------------------------------------------------------
def test_routes_match_path_parameters() -> None:
    assert _match("/records/{id}", ["records", "abc"]) == {"id": "abc"}
    assert _match("/records/{id}", ["records"]) is None
    assert _match("/records", ["records", "x"]) is None
    assert _match("/files/{path+}", ["files", "a", "b"]) == {"path": "a/b"}


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=10, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    time.sleep(0.15)
    assert bucket.take()


def test_schema_errors_like_api_gateway(cached_templates: Any) -> None:
    model = next(
        r for r in cached_templates["local"]["Resources"].values() if r["Type"] == "AWS::ApiGateway::Model"
    )
    schema = model["Properties"]["Schema"]
    assert _schema_errors(schema, json.dumps({"records": [{"type": "t", "data": {}}]}).encode()) == []
    errors = _schema_errors(schema, json.dumps({"records": [{"type": "t"}]}).encode())
    assert errors == ["instance failed to match exactly one schema (matched 0 out of 2)"]
    assert _schema_errors(schema, b"{not json")[0].startswith("Invalid JSON")


# ---- the emulation's per-operation CPU accounting (awsserver.CallStats, bench local_end_to_end) --------
def _aws_request(headers: list[tuple[str, str]], method: str = "POST") -> Any:
    from rtp_cli.local.http11 import Headers, Request

    return Request(method, "/", "1.1", Headers(headers), b"{}", ("127.0.0.1", 1))


def test_an_aws_request_is_named_by_its_signing_service_and_action() -> None:
    from rtp_cli.local.awsserver import operation_name

    scope = "AWS4-HMAC-SHA256 Credential=AKIAX/20261129/us-east-1/{}/aws4_request, SignedHeaders=host, Sig=0"
    target = ("X-Amz-Target", "DynamoDB_20120810.BatchWriteItem")
    assert operation_name(_aws_request([("Authorization", scope.format("dynamodb")), target])) == (
        "dynamodb:BatchWriteItem"
    )
    assert operation_name(_aws_request([("authorization", scope.format("s3"))], "PUT")) == "s3:PUT"
    assert operation_name(_aws_request([target])) == "unsigned:BatchWriteItem"


def test_call_stats_add_up_across_threads_and_keep_a_bounded_number_of_names() -> None:
    import threading

    from rtp_cli.local.awsserver import MAX_OPERATIONS, CallStats

    stats = CallStats()

    def add_500() -> None:
        for _ in range(500):
            stats.add("dynamodb:GetItem", 0.001, 10)

    threads = [threading.Thread(target=add_500) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stats.snapshot()["dynamodb:GetItem"] == {"calls": 2000, "cpu_seconds": 2.0, "request_bytes": 20000}
    for n in range(MAX_OPERATIONS + 10):
        stats.add(f"made-up:{n}", 0.0, 0)
    snapshot = stats.snapshot()
    assert len(snapshot) == MAX_OPERATIONS + 1 and snapshot["(other)"]["calls"] == 11


def test_the_benchmark_reports_cpu_per_record_from_the_calls_made_during_the_send() -> None:
    from bench.local_end_to_end import cpu_report

    before = {"dynamodb:CreateTable": {"calls": 1, "cpu_seconds": 0.05}}
    after = {
        **before,
        "dynamodb:BatchWriteItem": {"calls": 40, "cpu_seconds": 0.24},
        "sqs:ReceiveMessage": {"calls": 4, "cpu_seconds": 0.01},
    }
    line = cpu_report(1000, 0.5, before, after)
    assert line.startswith("runtime process CPU 0.500 ms/record, of it AWS emulation 0.250: ")
    assert "dynamodb:BatchWriteItem 0.240 (40/1k records, 6.0 ms each); sqs:ReceiveMessage 0.010" in line
    assert "CreateTable" not in line  # made before the send: not the records' cost
    assert cpu_report(1000, None, before, after) == "runtime CPU not measured"


def test_the_bench_counts_the_cpu_of_live_child_processes_and_the_machine_s_busy_cores() -> None:
    import os
    import subprocess
    import sys

    from bench.local_end_to_end import busy_cores, process_cpu_seconds, tree_cpu_seconds

    burn = "\n".join(
        [
            "import time",
            # More than the 0.3 s looked for: /proc counts CPU in scheduler ticks, which can fall short of
            # the child's own clock (this failed once under load with the child burning exactly 0.3 s).
            "end = time.process_time() + 0.6",
            "while time.process_time() < end: pass",
            "time.sleep(30)",
        ]
    )
    child = subprocess.Popen([sys.executable, "-c", burn])
    try:
        deadline = time.monotonic() + 20
        while (process_cpu_seconds(child.pid) or 0.0) < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        own, tree = process_cpu_seconds(os.getpid()), tree_cpu_seconds(os.getpid())
        assert own is not None and tree is not None
        assert tree - own >= 0.3  # the child's, still running (not yet in this process's RUSAGE_CHILDREN)
    finally:
        child.kill()
        child.wait()
    assert busy_cores((100, 1000), (300, 1400)) == pytest.approx(0.5 * (os.cpu_count() or 1))
    assert busy_cores(None, (1, 2)) is None and busy_cores((5, 10), (5, 10)) is None


def test_a_run_s_shared_session_never_reads_the_developer_s_aws_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler and operate tests make one boto3 session per run (`lambda_session`): a profile or an
    endpoint_url in the developer's config would send the handlers' calls past moto or fail every test.
    (Negative: a session made outside it takes both.)"""
    import boto3
    from botocore.exceptions import ProfileNotFound

    from rtp_cli.local.inprocess import lambda_session

    config = tmp_path / "config"
    config.write_text("[default]\nendpoint_url = http://127.0.0.1:9\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    assert boto3.Session(region_name="us-east-1").client("dynamodb").meta.endpoint_url == "http://127.0.0.1:9"
    assert lambda_session().client("dynamodb").meta.endpoint_url == "https://dynamodb.us-east-1.amazonaws.com"
    monkeypatch.setenv("AWS_PROFILE", "nosuch")
    with pytest.raises(ProfileNotFound):
        boto3.Session(region_name="us-east-1")
    assert lambda_session().region_name == "us-east-1"
