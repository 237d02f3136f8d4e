"""`rtp status`: the first screen in an incident. Stack state and outputs, alarms in ALARM, and the work
queue and dead-letter queue depth with the age of their oldest message. Same report for local and AWS.
In AWS it also warns when the alarm e-mail subscription is not confirmed (alarms would reach nobody).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rtp_cli.target import Target


def queue_depth(sqs: Any, url: str) -> dict[str, int]:
    """Approximate visible, in-flight and delayed messages (GetQueueAttributes; approximate by design:
    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-resources-required-process-messages.html)."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return {
        "visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
        "inFlight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        "delayed": int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    }


QUEUES = (("work queue", "WorkQueueUrl"), ("dead-letter queue", "DeadLetterQueueUrl"))


@dataclass
class QueueStatus:
    label: str
    url: str
    visible: int | None = None
    in_flight: int | None = None
    delayed: int | None = None
    oldest_age_seconds: float | None = None
    error: str = ""


@dataclass(frozen=True)
class StatusWarning:
    """Something that does not page anyone yet but will bite: what is wrong and the fix."""

    detail: str
    fix: str


@dataclass
class StatusReport:
    env: str
    stack_name: str
    stack_status: str
    api_url: str
    outputs: dict[str, str]
    alarms: list[dict[str, str]] | None  # None: not applicable (local)
    alarms_note: str = ""
    queues: list[QueueStatus] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[StatusWarning] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        dlq = next((q for q in self.queues if q.label == "dead-letter queue"), None)
        return not self.alarms and (dlq is None or not dlq.visible) and not any(q.error for q in self.queues)

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "stack": self.stack_name,
            "status": self.stack_status,
            "apiUrl": self.api_url,
            "outputs": self.outputs,
            "alarms": self.alarms,
            "alarmsNote": self.alarms_note,
            "queues": [q.__dict__ for q in self.queues],
            "healthy": self.healthy,
            "warnings": [w.__dict__ for w in self.warnings],
        }


def collect_status(target: Target) -> StatusReport:
    report = StatusReport(
        env=target.env,
        stack_name=target.stack_name,
        stack_status=target.stack_status,
        api_url=target.api_url,
        outputs=dict(target.outputs),
        alarms=None,
    )
    sqs = target.client("sqs")
    ages = _local_ages(target) if target.is_local else {}
    for label, key in QUEUES:
        url = target.outputs.get(key)
        if not url:
            continue
        queue = QueueStatus(label, url)
        try:
            depth = queue_depth(sqs, url)
            queue.visible, queue.in_flight, queue.delayed = (
                depth["visible"],
                depth["inFlight"],
                depth["delayed"],
            )
            if target.is_local:
                queue.oldest_age_seconds = ages.get(url.rstrip("/").rsplit("/", 1)[-1], {}).get(
                    "oldest_age_seconds"
                )
            else:
                queue.oldest_age_seconds = _oldest_age(target, url)
        except Exception as error:
            queue.error = str(error)
        report.queues.append(queue)
    if target.is_local:
        report.alarms_note = (
            "CloudWatch alarms exist only in AWS; locally watch the queues above and `rtp logs`"
        )
        report.extra = {
            "pid": target.extra.get("pid"),
            "aws_endpoint_url": target.endpoint_url,
            "started_at": target.extra.get("started_at"),
            "transform": target.extra.get("transform"),
        }
    else:
        report.alarms = _alarms(target)
        report.warnings.extend(_subscription_warnings(target))
    return report


# SNS e-mail subscriptions stay "PendingConfirmation" until the recipient follows the link in the
# confirmation e-mail; nothing is delivered before that, and unconfirmed subscriptions are deleted after
# 48 hours (https://docs.aws.amazon.com/sns/latest/dg/sns-email-notifications.html,
# https://aws.amazon.com/about-aws/whats-new/2023/05/amazon-sns-automatic-deletion-unconfirmed-subscriptions/).
# ListSubscriptionsByTopic reports such a subscription with SubscriptionArn "PendingConfirmation"
# (https://docs.aws.amazon.com/sns/latest/api/API_ListSubscriptionsByTopic.html).
PENDING_CONFIRMATION = "PendingConfirmation"


def email_subscription_problems(sns: Any, topic_arn: str, email: str, region: str) -> list[StatusWarning]:
    """The configured alarm e-mail as SNS sees it on the alarm topic: pending or missing is a warning."""
    subscribe = (
        f"aws sns subscribe --region {region} --topic-arn {topic_arn} --protocol email "
        f"--notification-endpoint {email}"
    )
    states: dict[str, str] = {}
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn):
        for subscription in page.get("Subscriptions", []):
            if subscription.get("Protocol") == "email":
                states[str(subscription.get("Endpoint", "")).lower()] = str(
                    subscription.get("SubscriptionArn")
                )
    state = states.get(email.lower())
    if state == PENDING_CONFIRMATION:
        return [
            StatusWarning(
                f"alarm e-mail {email} has not confirmed its subscription: alarms reach nobody until it does",
                "open the 'AWS Notification - Subscription Confirmation' e-mail sent to "
                f"{email} (check spam) and choose Confirm subscription; unconfirmed subscriptions "
                f"are deleted after 48 h (then: {subscribe})",
            )
        ]
    if state is None:
        return [
            StatusWarning(
                f"alarm e-mail {email} is not subscribed to the alarm topic (unconfirmed for 48 h, or "
                "unsubscribed): alarms reach nobody",
                f"{subscribe}, then confirm the e-mail (CloudFormation does not recreate it by itself)",
            )
        ]
    return []


def _subscription_warnings(target: Target) -> list[StatusWarning]:
    from stack.config import ConfigError, load_config

    topic = target.outputs.get("AlarmTopicArn")
    try:
        email = load_config(target.env).alarms.email
    except ConfigError:
        return []
    if not topic or not email:
        return []
    try:
        return email_subscription_problems(target.client("sns"), topic, email, target.region)
    except Exception as error:  # status must render even when one probe fails
        return [
            StatusWarning(
                f"could not check the alarm e-mail subscription: {error}", "sns:ListSubscriptionsByTopic"
            )
        ]


def _local_ages(target: Target) -> dict[str, Any]:
    """The local runtime reports queue ages without receiving (see runtime.queue_ages)."""
    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    base = target.api_url.split("/", 3)
    url = f"{base[0]}//{base[2]}/_rtp/queues"
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(target.credentials(), "execute-api", target.region).add_auth(request)
    try:
        response = requests.get(url, headers=dict(request.headers), timeout=5)
        if response.ok:
            result: dict[str, Any] = response.json()
            return result
    except requests.RequestException:
        pass
    return {}


def _oldest_age(target: Target, url: str) -> float | None:
    cloudwatch = target.client("cloudwatch")
    now = datetime.now(UTC)
    points = cloudwatch.get_metric_statistics(
        Namespace="AWS/SQS",
        MetricName="ApproximateAgeOfOldestMessage",
        Dimensions=[{"Name": "QueueName", "Value": url.rstrip("/").rsplit("/", 1)[-1]}],
        StartTime=now - timedelta(minutes=15),
        EndTime=now,
        Period=60,
        Statistics=["Maximum"],
    ).get("Datapoints", [])
    if not points:
        return None
    latest = max(points, key=lambda p: p["Timestamp"])
    return float(latest["Maximum"])


def _alarms(target: Target) -> list[dict[str, str]]:
    cloudwatch = target.client("cloudwatch")
    alarms: list[dict[str, str]] = []
    paginator = cloudwatch.get_paginator("describe_alarms")
    for page in paginator.paginate(StateValue="ALARM", AlarmNamePrefix=target.stack_name):
        for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
            alarms.append(
                {
                    "name": str(alarm.get("AlarmName")),
                    "reason": str(alarm.get("StateReason", "")),
                    "since": str(alarm.get("StateUpdatedTimestamp", "")),
                }
            )
    return alarms
