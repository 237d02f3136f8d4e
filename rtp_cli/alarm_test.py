"""`rtp alarm test`: prove, in AWS, that an alarm's notification reaches the alarm topic.

An alarm that changes state but whose SNS action is refused (the topic policy does not let CloudWatch
publish, or the topic's KMS key policy does not let CloudWatch use the key) looks healthy everywhere
except in its history. So the test does what the CloudWatch documentation suggests for testing actions:

1. `SetAlarmState` puts one of the stack's alarms into ALARM. "When the updated state differs from the
   previous value, the action configured for the appropriate state is invoked", and the change is
   "typically only visible in the alarm's History tab ... or through DescribeAlarmHistory"
   (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_SetAlarmState.html). So the
   alarm must not already be in ALARM.
2. `DescribeAlarmHistory` with `HistoryItemType=Action` is polled (bounded by a timeout) until the
   action item for the alarm topic appears
   (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarmHistory.html,
   https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_AlarmHistoryItem.html). Its
   `HistoryData` JSON carries `actionState` ("Succeeded" / "Failed"), `notificationResource` (the topic)
   and `error`; the summary reads "Successfully executed action <topic>" or "Failed to execute action
   <topic>. Received error: ..." (examples: https://github.com/aws/aws-sdk-java/issues/1723,
   https://repost.aws/knowledge-center/cloudwatch-receive-sns-for-alarm-trigger,
   https://github.com/aws/aws-cdk/issues/11121 for the KMS AccessDenied variant).
3. The alarm is set back to OK, whatever happened (its OK action tells the recipients the test is over).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

TEST_REASON = "rtp alarm test: proving the notification path (set by `rtp alarm test`; returns to OK)"
RESTORE_REASON = "rtp alarm test finished: returned to OK (the alarm re-evaluates its metric as usual)"
CLOCK_SKEW = timedelta(seconds=5)  # history timestamps come from AWS, the start time from this machine


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


class AlarmTestError(RuntimeError):
    """The test cannot run: no alarm notifies the topic, or every one is already in ALARM."""


@dataclass(frozen=True)
class AlarmTestResult:
    alarm: str
    topic_arn: str
    ok: bool
    detail: str  # the history summary (or why there was none)
    error: str  # the failure message the action item carries
    waited_seconds: float
    restored: bool
    restore_error: str = ""


def pick_alarm(cloudwatch: Any, stack_name: str, topic_arn: str, name: str | None = None) -> str:
    """One of the stack's alarms whose ALARM action is the topic and whose state can change to ALARM:
    `name` if given, else the first in OK (then INSUFFICIENT_DATA) by name."""
    candidates: list[dict[str, Any]] = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(
        AlarmNamePrefix=stack_name, AlarmTypes=["MetricAlarm", "CompositeAlarm"]
    ):
        candidates.extend(page.get("MetricAlarms", []))
        candidates.extend(page.get("CompositeAlarms", []))
    if name is not None:
        chosen = [a for a in candidates if a.get("AlarmName") == name]
        if not chosen:
            raise AlarmTestError(f"no alarm named {name!r} in {stack_name} (names start with {stack_name}-)")
        candidates = chosen
    notifying = [
        a for a in candidates if topic_arn in a.get("AlarmActions", []) and a.get("ActionsEnabled", True)
    ]
    if not notifying:
        raise AlarmTestError(
            f"no alarm of {stack_name}{f' named {name}' if name else ''} has the alarm topic {topic_arn} "
            "as an enabled ALARM action: alarms would notify nobody (redeploy the stack)"
        )
    for state in ("OK", "INSUFFICIENT_DATA"):
        ready = sorted(
            (a for a in notifying if a.get("StateValue") == state), key=lambda a: str(a["AlarmName"])
        )
        if ready:
            return str(ready[0]["AlarmName"])
    raise AlarmTestError(
        f"{'that alarm is' if name else 'every alarm that notifies the topic is'} already in ALARM: "
        "SetAlarmState runs actions only when the state changes; test again once it is OK, or name another "
        "alarm with --alarm"
    )


def _action_outcome(item: dict[str, Any], topic_arn: str) -> tuple[str, str] | None:
    """(actionState, error) of an Action history item for `topic_arn`, or None if it is for another action."""
    summary = str(item.get("HistorySummary", ""))
    try:
        data = json.loads(item.get("HistoryData") or "{}")
    except ValueError:
        data = {}
    resource = str(data.get("notificationResource", ""))
    if resource and resource != topic_arn:
        return None
    if not resource and topic_arn not in summary:
        return None
    state = str(data.get("actionState", ""))
    if not state:
        state = (
            "Succeeded"
            if summary.startswith("Successfully executed action")
            else ("Failed" if summary.startswith("Failed to execute action") else "")
        )
    if not state:
        return None
    error = data.get("error") or ""
    if state == "Failed" and not error:
        error = summary.split("Received error:", 1)[-1].strip() if "Received error:" in summary else summary
    return state, str(error)


def run_alarm_test(
    cloudwatch: Any,
    alarm: str,
    topic_arn: str,
    *,
    timeout: float = 60.0,
    poll_seconds: float = 3.0,
    now: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] | None = None,
    progress: Callable[[str], None] = lambda _message: None,
) -> AlarmTestResult:
    """ALARM, wait for the topic action's history item, back to OK. Never leaves the alarm forced."""
    now = now or _utcnow
    sleep = sleep or _sleep
    started = now()
    since = started - CLOCK_SKEW
    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason=TEST_REASON)
    progress(f"{alarm} set to ALARM; waiting for its action on {topic_arn}")
    outcome: tuple[str, str] | None = None
    summary = ""
    try:
        while True:
            items = cloudwatch.describe_alarm_history(
                AlarmName=alarm,
                HistoryItemType="Action",
                StartDate=since,
                EndDate=now() + CLOCK_SKEW,
                ScanBy="TimestampAscending",
            ).get("AlarmHistoryItems", [])
            for item in items:
                found = _action_outcome(item, topic_arn)
                if found is None:
                    continue
                summary = str(item.get("HistorySummary", ""))
                outcome = found
                if found[0] == "Failed":
                    break  # one refused delivery is the answer
            if outcome is not None:
                break
            waited = (now() - started).total_seconds()
            if waited >= timeout:
                break
            sleep(min(poll_seconds, max(timeout - waited, 0.0)))
    finally:
        restored, restore_error = True, ""
        try:
            cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason=RESTORE_REASON)
        except Exception as problem:  # report it; the alarm returns to its real state on its next evaluation
            restored, restore_error = False, str(problem)
    waited = (now() - started).total_seconds()
    if outcome is None:
        return AlarmTestResult(
            alarm,
            topic_arn,
            False,
            f"no action history for {topic_arn} within {timeout:g} s: the alarm's action did not run",
            "",
            waited,
            restored,
            restore_error,
        )
    state, error = outcome
    return AlarmTestResult(
        alarm, topic_arn, state == "Succeeded", summary, error, waited, restored, restore_error
    )
