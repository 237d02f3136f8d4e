"""The SQS event source mapping, emulated from the template's AWS::Lambda::EventSourceMapping.

Like Lambda's SQS pollers: `MaximumConcurrency` pollers (ScalingConfig; a local cap when absent) each
receive up to `BatchSize` messages, gathering for at most `MaximumBatchingWindowInSeconds` when the batch
is not full, then invoke the function synchronously with an SQS event. On success the whole batch is
deleted; with `ReportBatchItemFailures` only the messages not listed in `batchItemFailures` are deleted;
on a function error or timeout (or an invalid partial-batch response) nothing is deleted. Messages left
on the queue reappear after the queue's visibility timeout, and the queue's own redrive policy moves a
message to the dead-letter queue once its receive count exceeds `maxReceiveCount`: that part is the
emulated SQS's job on receive, exactly as in AWS.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from rtp_cli.local.functions import FunctionRuntime
from rtp_cli.local.template import Template

LOCAL_POLLER_CAP = 5
SQS_RECEIVE_MAX = 10


@dataclass
class MappingSpec:
    logical_id: str
    function: str
    queue_url: str
    queue_arn: str
    batch_size: int
    window_seconds: float
    report_failures: bool
    concurrency: int
    enabled: bool


def mapping_specs(template: Template) -> list[MappingSpec]:
    specs = []
    for logical_id in template.of_type("AWS::Lambda::EventSourceMapping"):
        props = template.props(logical_id)
        queue_id = template.referenced_logical_id(props["EventSourceArn"])
        function_id = template.referenced_logical_id(props["FunctionName"])
        assert queue_id is not None and function_id is not None
        scaling = props.get("ScalingConfig") or {}
        specs.append(
            MappingSpec(
                logical_id=logical_id,
                function=function_id,
                queue_url=template.refs[queue_id],
                queue_arn=template.attrs[(queue_id, "Arn")],
                batch_size=int(props.get("BatchSize", 10)),
                window_seconds=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                report_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                concurrency=int(scaling.get("MaximumConcurrency", LOCAL_POLLER_CAP)),
                enabled=bool(props.get("Enabled", True)),
            )
        )
    return specs


class EventSourcePoller:
    def __init__(self, spec: MappingSpec, sqs: Any, functions: FunctionRuntime, region: str) -> None:
        self.spec = spec
        self.sqs = sqs
        self.functions = functions
        self.region = region
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._poll, name=f"rtp-esm-{i}", daemon=True)
            for i in range(spec.concurrency)
        ]
        self.invocations = 0

    def start(self) -> None:
        if not self.spec.enabled:
            return
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=3)

    def _receive(self, count: int, wait: int) -> list[dict[str, Any]]:
        response = self.sqs.receive_message(
            QueueUrl=self.spec.queue_url,
            MaxNumberOfMessages=max(1, min(count, SQS_RECEIVE_MAX)),
            WaitTimeSeconds=wait,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._receive(self.spec.batch_size, wait=1)
                if not batch:
                    continue
                deadline = time.monotonic() + self.spec.window_seconds
                while (
                    len(batch) < self.spec.batch_size
                    and time.monotonic() < deadline
                    and not self._stop.is_set()
                ):
                    more = self._receive(self.spec.batch_size - len(batch), wait=0)
                    if more:
                        batch.extend(more)
                    else:
                        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                self._deliver(batch)
            except Exception:
                if self._stop.is_set():
                    return
                time.sleep(0.5)  # the emulation is restarting or gone; try again like Lambda's poller

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        event = {"Records": [self._record(message) for message in batch]}
        invocation = self.functions.invoke(self.spec.function, event)
        self.invocations += 1
        if not invocation.ok:
            return  # the whole batch becomes visible again after the visibility timeout
        succeeded = batch
        if self.spec.report_failures:
            failed = _reported_failures(invocation.result, {m["MessageId"] for m in batch})
            if failed is None:
                return  # an invalid partial-batch response fails the whole batch, as in Lambda
            succeeded = [m for m in batch if m["MessageId"] not in failed]
        for start in range(0, len(succeeded), SQS_RECEIVE_MAX):
            chunk = succeeded[start : start + SQS_RECEIVE_MAX]
            with contextlib.suppress(Exception):
                self.sqs.delete_message_batch(
                    QueueUrl=self.spec.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                    ],
                )

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        attributes = message.get("Attributes", {})
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {
                key: attributes[key]
                for key in (
                    "ApproximateReceiveCount",
                    "SentTimestamp",
                    "SenderId",
                    "ApproximateFirstReceiveTimestamp",
                    "AWSTraceHeader",
                    "MessageGroupId",
                    "MessageDeduplicationId",
                    "SequenceNumber",
                )
                if key in attributes
            },
            "messageAttributes": {
                name: {
                    "stringValue": value.get("StringValue"),
                    "binaryValue": value.get("BinaryValue"),
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": value.get("DataType"),
                }
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
            "eventSource": "aws:sqs",
            "eventSourceARN": self.spec.queue_arn,
            "awsRegion": self.region,
        }


def _reported_failures(result: Any, ids: set[str]) -> set[str] | None:
    """Message ids the function reported as failed; None if the response is invalid (fail the batch)."""
    if result is None:
        return set()
    if not isinstance(result, dict):
        return None
    items = result.get("batchItemFailures")
    if items is None:
        return set()
    failed = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in ids:
            return None
        failed.add(identifier)
    return failed
