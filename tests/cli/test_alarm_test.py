"""`rtp alarm test` offline: the exact CloudWatch calls (botocore Stubber) for success, a refused
action, a timeout, the alarm choice, and the command's exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws
from typer.testing import CliRunner

import rtp_cli.app as cli
from rtp_cli import alarm_test
from rtp_cli.alarm_test import AlarmTestError, pick_alarm, run_alarm_test

REGION = "eu-west-1"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:rtp-dev-MonitoringAlarmTopic-ABC"
ALARM = "rtp-dev-MonitoringDeadLetters-1A2B"
START = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
runner = CliRunner()


class Clock:
    """Time that moves only when the code under test sleeps: no real waiting in tests."""

    def __init__(self) -> None:
        self.now = START
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def cloudwatch() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("cloudwatch", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    stub = Stubber(client)
    with stub:
        yield client, stub
    stub.assert_no_pending_responses()  # every expected call happened, including the return to OK


def expect_set(stub: Stubber, state: str) -> None:
    stub.add_response("set_alarm_state", {}, {"AlarmName": ALARM, "StateValue": state, "StateReason": ANY})


def expect_history(stub: Stubber, *items: dict[str, Any]) -> None:
    stub.add_response(
        "describe_alarm_history",
        {"AlarmHistoryItems": list(items)},
        {
            "AlarmName": ALARM,
            "HistoryItemType": "Action",
            "StartDate": ANY,
            "EndDate": ANY,
            "ScanBy": "TimestampAscending",
        },
    )


def action_item(state: str, error: str | None = None, topic: str = TOPIC) -> dict[str, Any]:
    """An Action history item as CloudWatch writes it (HistoryData JSON with actionState and the topic)."""
    if state == "Succeeded":
        summary = f"Successfully executed action {topic}"
    else:
        summary = f'Failed to execute action {topic}. Received error: "{error}"'
    data = {"actionState": state, "notificationResource": topic, "stateUpdateTimestamp": 1777636800000}
    data["error"] = error
    return {
        "AlarmName": ALARM,
        "AlarmType": "MetricAlarm",
        "Timestamp": START + timedelta(seconds=2),
        "HistoryItemType": "Action",
        "HistorySummary": summary,
        "HistoryData": json.dumps(data),
    }


def test_the_action_succeeded(cloudwatch: tuple[Any, Stubber]) -> None:
    client, stub = cloudwatch
    clock = Clock()
    expect_set(stub, "ALARM")
    expect_history(stub)  # not there yet
    expect_history(stub, action_item("Succeeded"))
    expect_set(stub, "OK")
    result = run_alarm_test(client, ALARM, TOPIC, timeout=30, poll_seconds=3, now=clock, sleep=clock.sleep)
    assert result.ok and result.restored and result.error == ""
    assert result.detail == f"Successfully executed action {TOPIC}"
    assert clock.slept == [3]


def test_a_refused_action_prints_cloudwatchs_error(cloudwatch: tuple[Any, Stubber]) -> None:
    client, stub = cloudwatch
    clock = Clock()
    denied = (
        f"Resource: arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{ALARM} is not authorized to perform: "
        f"SNS:Publish on resource: {TOPIC}"
    )
    expect_set(stub, "ALARM")
    expect_history(stub, action_item("Failed", denied))
    expect_set(stub, "OK")
    result = run_alarm_test(client, ALARM, TOPIC, now=clock, sleep=clock.sleep)
    assert not result.ok and result.restored
    assert "is not authorized to perform: SNS:Publish" in result.error
    assert result.detail.startswith(f"Failed to execute action {TOPIC}")


def test_a_kms_refusal_without_history_data_error_uses_the_summary(cloudwatch: tuple[Any, Stubber]) -> None:
    client, stub = cloudwatch
    clock = Clock()
    item = action_item("Failed", None)
    item["HistoryData"] = "not json"
    item["HistorySummary"] = (
        f'Failed to execute action {TOPIC}. Received error: "null (Service: AWSKMS; Status Code: 400; '
        'Error Code: AccessDeniedException)"'
    )
    expect_set(stub, "ALARM")
    expect_history(stub, item)
    expect_set(stub, "OK")
    result = run_alarm_test(client, ALARM, TOPIC, now=clock, sleep=clock.sleep)
    assert not result.ok and "AWSKMS" in result.error and "AccessDeniedException" in result.error


def test_other_actions_are_not_mistaken_for_the_topic(cloudwatch: tuple[Any, Stubber]) -> None:
    client, stub = cloudwatch
    clock = Clock()
    expect_set(stub, "ALARM")
    for _ in range(3):  # t = 0, 3, 4 s
        expect_history(stub, action_item("Succeeded", topic="arn:aws:sns:eu-west-1:123456789012:other"))
    expect_set(stub, "OK")
    result = run_alarm_test(client, ALARM, TOPIC, timeout=4, poll_seconds=3, now=clock, sleep=clock.sleep)
    assert not result.ok and "no action history" in result.detail


def test_timeout_is_bounded_and_still_returns_to_ok(cloudwatch: tuple[Any, Stubber]) -> None:
    client, stub = cloudwatch
    clock = Clock()
    expect_set(stub, "ALARM")
    for _ in range(5):  # t = 0, 3, 6, 9 s, and a last look at the 10 s deadline
        expect_history(stub)
    expect_set(stub, "OK")
    result = run_alarm_test(client, ALARM, TOPIC, timeout=10, poll_seconds=3, now=clock, sleep=clock.sleep)
    assert not result.ok and result.restored
    assert "within 10 s" in result.detail and result.waited_seconds == 10
    assert clock.slept == [3, 3, 3, 1]


def test_a_failed_return_to_ok_is_reported(cloudwatch: tuple[Any, Stubber]) -> None:
    client, stub = cloudwatch
    clock = Clock()
    expect_set(stub, "ALARM")
    expect_history(stub, action_item("Succeeded"))
    stub.add_client_error("set_alarm_state", "Throttling", "Rate exceeded")
    result = run_alarm_test(client, ALARM, TOPIC, now=clock, sleep=clock.sleep)
    assert result.ok and not result.restored and "Rate exceeded" in result.restore_error


# ---- which alarm -----------------------------------------------------------------------------------------
def metric_alarm(
    name: str, state: str, actions: list[str] | None = None, enabled: bool = True
) -> dict[str, Any]:
    return {
        "AlarmName": name,
        "StateValue": state,
        "ActionsEnabled": enabled,
        "AlarmActions": [TOPIC] if actions is None else actions,
    }


def expect_alarms(stub: Stubber, *alarms: dict[str, Any]) -> None:
    stub.add_response(
        "describe_alarms",
        {"MetricAlarms": list(alarms), "CompositeAlarms": []},
        {"AlarmNamePrefix": "rtp-dev", "AlarmTypes": ["MetricAlarm", "CompositeAlarm"]},
    )


def test_picks_an_alarm_in_ok_that_notifies_the_topic(cloudwatch: tuple[Any, Stubber]) -> None:
    client, stub = cloudwatch
    expect_alarms(
        stub,
        metric_alarm("rtp-dev-A", "ALARM"),
        metric_alarm("rtp-dev-B", "OK", actions=[]),
        metric_alarm("rtp-dev-C", "OK", enabled=False),
        metric_alarm("rtp-dev-E", "OK"),
        metric_alarm("rtp-dev-D", "INSUFFICIENT_DATA"),
    )
    assert pick_alarm(client, "rtp-dev", TOPIC) == "rtp-dev-E"


def test_no_alarm_notifies_the_topic(cloudwatch: tuple[Any, Stubber]) -> None:
    client, stub = cloudwatch
    expect_alarms(stub, metric_alarm("rtp-dev-A", "OK", actions=["arn:aws:sns:eu-west-1:1:elsewhere"]))
    with pytest.raises(AlarmTestError, match="would notify nobody"):
        pick_alarm(client, "rtp-dev", TOPIC)


def test_every_alarm_already_in_alarm(cloudwatch: tuple[Any, Stubber]) -> None:
    client, stub = cloudwatch
    expect_alarms(stub, metric_alarm("rtp-dev-A", "ALARM"))
    with pytest.raises(AlarmTestError, match="only when the state changes"):
        pick_alarm(client, "rtp-dev", TOPIC)


def test_a_named_alarm(cloudwatch: tuple[Any, Stubber]) -> None:
    client, stub = cloudwatch
    expect_alarms(stub, metric_alarm("rtp-dev-A", "OK"), metric_alarm("rtp-dev-B", "INSUFFICIENT_DATA"))
    assert pick_alarm(client, "rtp-dev", TOPIC, "rtp-dev-B") == "rtp-dev-B"
    expect_alarms(stub, metric_alarm("rtp-dev-A", "OK"))
    with pytest.raises(AlarmTestError, match="no alarm named 'rtp-dev-Z'"):
        pick_alarm(client, "rtp-dev", TOPIC, "rtp-dev-Z")


# ---- the command -----------------------------------------------------------------------------------------
@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch, cloudwatch: tuple[Any, Stubber]) -> Iterator[Stubber]:
    """`rtp-dev` deployed (moto CloudFormation) with a stubbed CloudWatch client; no real waiting."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.delenv("RTP_ENV", raising=False)
    client, stub = cloudwatch
    monkeypatch.setattr(cli, "alarm_cloudwatch", lambda target: client)
    clock = Clock()
    monkeypatch.setattr(alarm_test, "_utcnow", clock)
    monkeypatch.setattr(alarm_test, "_sleep", clock.sleep)
    with mock_aws():
        outputs = {"ApiUrl": {"Value": "https://abc.execute-api.eu-west-1.amazonaws.com/v1/"}}
        outputs["AlarmTopicArn"] = {"Value": TOPIC}
        template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": outputs}
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName="rtp-dev", TemplateBody=json.dumps(template)
        )
        yield stub


def test_command_success(deployed: Stubber) -> None:
    expect_alarms(deployed, metric_alarm(ALARM, "OK"))
    expect_set(deployed, "ALARM")
    expect_history(deployed, action_item("Succeeded"))
    expect_set(deployed, "OK")
    result = runner.invoke(cli.app, ["alarm", "test", "--env", "dev"])
    assert result.exit_code == 0, result.output
    assert "notification path OK" in result.output and "returned to OK" in result.output


def test_command_failed_action_exits_1_with_the_reason(deployed: Stubber) -> None:
    expect_alarms(deployed, metric_alarm(ALARM, "OK"))
    expect_set(deployed, "ALARM")
    expect_history(
        deployed,
        action_item(
            "Failed", "CloudWatch Alarms does not have authorization to access the SNS topic encryption key."
        ),
    )
    expect_set(deployed, "OK")
    result = runner.invoke(cli.app, ["alarm", "test", "--env", "dev"])
    assert result.exit_code == 1
    assert "notification path FAILED" in result.output and "encryption key" in result.output
    assert "kms:GenerateDataKey" in result.output


def test_command_timeout_exits_1(deployed: Stubber) -> None:
    expect_alarms(deployed, metric_alarm(ALARM, "OK"))
    expect_set(deployed, "ALARM")
    expect_history(deployed)  # t = 0 s
    expect_history(deployed)  # t = 1 s: the --timeout
    expect_set(deployed, "OK")
    result = runner.invoke(cli.app, ["alarm", "test", "--env", "dev", "--timeout", "1"])
    assert result.exit_code == 1, result.output
    assert "no action history" in result.output and "returned to OK" in result.output


def test_command_no_usable_alarm_exits_1(deployed: Stubber) -> None:
    expect_alarms(deployed, metric_alarm(ALARM, "ALARM"))
    result = runner.invoke(cli.app, ["alarm", "test", "--env", "dev"])
    assert result.exit_code == 1 and "already in ALARM" in result.output


def test_command_access_denied_exits_2(deployed: Stubber) -> None:
    expect_alarms(deployed, metric_alarm(ALARM, "OK"))
    deployed.add_client_error(
        "set_alarm_state", "AccessDenied", "not authorized to perform cloudwatch:SetAlarmState", 403
    )
    result = runner.invoke(cli.app, ["alarm", "test", "--env", "dev"])
    assert result.exit_code == 2 and "cloudwatch:SetAlarmState" in result.output


def test_command_local_and_not_deployed_are_usage_errors(deployed: Stubber) -> None:
    local = runner.invoke(cli.app, ["alarm", "test", "--env", "local"])
    assert local.exit_code == 2 and "only in AWS" in local.output
    missing = runner.invoke(cli.app, ["alarm", "test", "--env", "staging"])
    assert missing.exit_code == 2 and "rtp-staging is not deployed" in missing.output
