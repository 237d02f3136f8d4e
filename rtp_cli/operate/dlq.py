"""`rtp dlq`: inspect and redrive the dead-letter queue during an incident.

- list: depth (visible, in flight) and the age of the oldest message seen.
- peek: messages with what they point to (batch, S3 key, receive count, the batch's `lastError` from the
  table) without consuming them: received with VisibilityTimeout=0, so they stay visible.
- redrive: SQS's native message-move task (StartMessageMoveTask) when the endpoint has it and no count
  limit is asked; otherwise a receive -> send to the source queue -> delete loop. A message is deleted
  from the DLQ only after the source queue has it, so a crash can duplicate (the processor is idempotent)
  but never lose a message.
- purge: PurgeQueue (the command layer asks for confirmation).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

# Error codes an endpoint answers with when it does not implement an action (moto answers one of these).
_UNSUPPORTED = {
    "InvalidAction",
    "UnsupportedOperation",
    "NotImplemented",
    "AWS.SimpleQueueService.UnsupportedOperation",
}


@dataclass(frozen=True)
class QueueDepth:
    name: str
    url: str
    visible: int
    in_flight: int
    oldest_age_seconds: float | None  # None: empty (or nothing could be sampled)


@dataclass
class PeekedMessage:
    message_id: str
    receive_count: int
    sent_at_ms: int
    body: str
    batch_id: str = ""
    bucket: str = ""
    key: str = ""
    record_count: int | None = None
    correlation_id: str = ""
    last_error: str = ""
    batch_state: dict[str, Any] = field(default_factory=dict)

    def age_seconds(self, now: float | None = None) -> float:
        return max((now or time.time()) - self.sent_at_ms / 1000, 0.0)


@dataclass
class RedriveResult:
    method: str  # "native" | "copy"
    moved: int = 0
    task_handle: str = ""
    status: str = ""
    dry_run: bool = False
    would_move: int = 0
    errors: list[str] = field(default_factory=list)


class DeadLetterQueue:
    def __init__(
        self,
        sqs: Any,
        dlq_url: str,
        source_url: str,
        dynamodb: Any | None = None,
        table_name: str | None = None,
        cloudwatch: Any | None = None,
        replay_url: str | None = None,
    ) -> None:
        self.sqs, self.url, self.source_url = sqs, dlq_url, source_url
        self.dynamodb, self.table_name, self.cloudwatch = dynamodb, table_name, cloudwatch
        # The replay queue dead-letters here too: its messages go back there, never to the live queue.
        self.replay_url = replay_url

    # --- list -------------------------------------------------------------------------------------
    def depth(self, url: str | None = None, name: str = "dead-letter queue") -> QueueDepth:
        """Depth, and the oldest message's age: sampled without consuming on a queue with no redrive
        policy (the DLQ). A queue with one (the work queue) is never received from here: every receive
        counts towards its maxReceiveCount and would push messages into the DLQ. Its age comes from the
        CloudWatch metric ApproximateAgeOfOldestMessage when a CloudWatch client is given."""
        url = url or self.url
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "RedrivePolicy",
            ],
        )["Attributes"]
        visible = int(attributes.get("ApproximateNumberOfMessages", 0))
        in_flight = int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0))
        oldest: float | None = None
        if visible and "RedrivePolicy" not in attributes:
            ages = [message.age_seconds() for message in self._sample(url, limit=50)]
            oldest = max(ages) if ages else None
        elif visible and self.cloudwatch is not None:
            oldest = self._metric_age(url)
        return QueueDepth(name, url, visible, in_flight, oldest)

    def _metric_age(self, url: str) -> float | None:
        if self.cloudwatch is None:
            return None
        now = time.time()
        try:
            points = self.cloudwatch.get_metric_statistics(
                Namespace="AWS/SQS",
                MetricName="ApproximateAgeOfOldestMessage",
                Dimensions=[{"Name": "QueueName", "Value": url.rstrip("/").rsplit("/", 1)[-1]}],
                StartTime=now - 900,
                EndTime=now,
                Period=60,
                Statistics=["Maximum"],
            ).get("Datapoints", [])
        except ClientError:
            return None
        if not points:
            return None
        return float(max(points, key=lambda point: point["Timestamp"])["Maximum"])

    # --- peek -------------------------------------------------------------------------------------
    def _sample(self, url: str, limit: int, rounds: int = 5) -> list[PeekedMessage]:
        """Receive without consuming: VisibilityTimeout=0 leaves every message visible. SQS returns a
        sample per call, so call a few times and keep the distinct messages."""
        found: dict[str, PeekedMessage] = {}
        empty_rounds = 0
        for _ in range(max(rounds, limit // 10 + rounds)):
            response = self.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=0,
                WaitTimeSeconds=0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            new = [m for m in messages if m["MessageId"] not in found]
            for message in new:
                attrs = message.get("Attributes", {})
                found[message["MessageId"]] = PeekedMessage(
                    message_id=message["MessageId"],
                    receive_count=int(attrs.get("ApproximateReceiveCount", 0)),
                    sent_at_ms=int(attrs.get("SentTimestamp", 0)),
                    body=message.get("Body", ""),
                )
            if len(found) >= limit:
                break
            empty_rounds = 0 if new else empty_rounds + 1
            if empty_rounds >= 2:
                break
        return sorted(found.values(), key=lambda m: m.sent_at_ms)[:limit]

    def peek(self, limit: int = 10) -> list[PeekedMessage]:
        messages = self._sample(self.url, limit)
        for message in messages:
            self._describe(message)
        return messages

    def _describe(self, message: PeekedMessage) -> None:
        try:
            claim = json.loads(message.body)
        except json.JSONDecodeError:
            message.last_error = "(body is not a claim check: not JSON)"
            return
        if not isinstance(claim, dict):
            return
        message.batch_id = str(claim.get("batchId", ""))
        message.bucket = str(claim.get("bucket", ""))
        message.key = str(claim.get("key", ""))
        message.correlation_id = str(claim.get("correlationId", ""))
        count = claim.get("recordCount")
        message.record_count = int(count) if isinstance(count, int) else None
        if message.batch_id and self.dynamodb is not None and self.table_name:
            from rtp_pipeline.storage import PipelineTable

            # get_batch: the counters, filled in from the record item for a batch that keeps none (byRecord).
            batch = PipelineTable(self.dynamodb, self.table_name).get_batch(message.batch_id, consistent=True)
            if batch:
                message.last_error = str(batch.get("lastError") or "")
                message.batch_state = {
                    name: int(batch[name])
                    for name in ("accepted", "processed", "rejected", "duplicates")
                    if isinstance(batch.get(name), int)
                }
            else:
                message.last_error = "(no batch item in the table: expired, or never created)"

    # --- redrive ----------------------------------------------------------------------------------
    def queue_arn(self, url: str) -> str:
        arn: str = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        return arn

    def redrive(
        self,
        max_messages: int | None = None,
        dry_run: bool = False,
        native: bool | None = None,
        wait_seconds: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> RedriveResult:
        """Move messages back to the queue each came from (the work queue, or the replay queue for a replay's
        message). `native=None`: use the move task when possible."""
        if dry_run:
            depth = self.depth()
            count = depth.visible if max_messages is None else min(depth.visible, max_messages)
            return RedriveResult(
                "native" if native and max_messages is None else "copy", dry_run=True, would_move=count
            )
        if max_messages is None and native is not False:
            try:
                return self._native(wait_seconds, sleep)
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
                # Endpoints without the action (moto answers 500 or an unknown-action code): the copy loop,
                # which is as safe, only slower.
                if native or (code not in _UNSUPPORTED and status < 500):
                    raise
            except NotImplementedError:
                if native:
                    raise
        return self._copy(max_messages)

    def _native(self, wait_seconds: float, sleep: Callable[[float], None]) -> RedriveResult:
        source_arn = self.queue_arn(self.url)
        before = self.depth().visible
        # No DestinationArn: "the messages will be redriven back to their respective original source
        # queues" (the work queue, or the replay queue for a replay's message):
        # https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_StartMessageMoveTask.html
        handle = self.sqs.start_message_move_task(SourceArn=source_arn)["TaskHandle"]
        result = RedriveResult("native", task_handle=handle, status="RUNNING")
        deadline = time.monotonic() + wait_seconds
        while True:
            tasks = self.sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10).get("Results", [])
            task = next((t for t in tasks if t.get("TaskHandle") == handle), tasks[0] if tasks else {})
            result.status = str(task.get("Status", "UNKNOWN"))
            result.moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
            if result.status != "RUNNING":
                if task.get("FailureReason"):
                    result.errors.append(str(task["FailureReason"]))
                return result
            if time.monotonic() >= deadline:
                result.errors.append(
                    f"the move task is still running after {wait_seconds:.0f}s "
                    f"({result.moved} of ~{before} moved); "
                    "it continues in SQS: check again with `rtp dlq list`"
                )
                return result
            sleep(1.0)

    def _copy(self, max_messages: int | None) -> RedriveResult:
        result = RedriveResult("copy")
        while max_messages is None or result.moved < max_messages:
            wanted = 10 if max_messages is None else min(10, max_messages - result.moved)
            messages = self.sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=wanted,
                VisibilityTimeout=120,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                break
            for position, message in enumerate(messages):
                try:
                    extra = {}
                    if message.get("MessageAttributes"):
                        extra["MessageAttributes"] = message["MessageAttributes"]
                    self.sqs.send_message(
                        QueueUrl=self._origin(message["Body"]), MessageBody=message["Body"], **extra
                    )
                except ClientError as error:
                    # Not copied: visible again at once; stop (something is wrong with the source).
                    result.errors.append(f"{message['MessageId']}: send to source failed: {error}")
                    self._release(messages[position:])  # this one and the rest not yet copied
                    return result
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
                result.moved += 1
        result.status = "COMPLETED"
        return result

    def _origin(self, body: str) -> str:
        """The queue a dead-lettered message came from: a replay's claim check (a `replay` member) goes back
        to the replay queue, so that live traffic never waits behind it."""
        if self.replay_url:
            with contextlib.suppress(ValueError, TypeError):
                message = json.loads(body)
                if isinstance(message, dict) and "replay" in message:
                    return self.replay_url
        return self.source_url

    def _release(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            # On failure it becomes visible again when its visibility timeout ends anyway.
            with contextlib.suppress(ClientError):
                self.sqs.change_message_visibility(
                    QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )

    # --- purge ------------------------------------------------------------------------------------
    def purge(self) -> int:
        depth = self.depth()
        self.sqs.purge_queue(QueueUrl=self.url)
        return depth.visible + depth.in_flight
