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


def mapping_of_queue(specs: list[MappingSpec], queue_url: str) -> MappingSpec:
    """The mapping that polls `queue_url` (the template has one per queue: live work, replay)."""
    found = [spec for spec in specs if spec.queue_url == queue_url]
    if len(found) != 1:
        raise ValueError(f"the template has {len(found)} event source mappings on {queue_url}, not 1")
    return found[0]


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
        source_attributes(self.sqs, self.spec)
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=3)

    def _receive(self, count: int, wait: int) -> list[dict[str, Any]]:
        return receive(self.sqs, self.spec, count, wait)

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
        invocation = self.functions.invoke(self.spec.function, sqs_event(batch, self.spec, self.region))
        self.invocations += 1
        delete_succeeded(
            self.sqs, self.spec, batch, settle(self.spec, batch, invocation.ok, invocation.result)
        )


def source_attributes(sqs: Any, spec: MappingSpec) -> dict[str, str]:
    """The queue's attributes, read with the function's role as Lambda does for an SQS mapping (hence
    sqs:GetQueueAttributes among the execution role's required permissions, Lambda developer guide,
    https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html)."""
    attributes: dict[str, str] = sqs.get_queue_attributes(QueueUrl=spec.queue_url, AttributeNames=["All"])[
        "Attributes"
    ]
    return attributes


def receive(sqs: Any, spec: MappingSpec, count: int, wait: int = 0) -> list[dict[str, Any]]:
    """One ReceiveMessage of the mapping's poller: up to `count` (at most 10) messages."""
    response = sqs.receive_message(
        QueueUrl=spec.queue_url,
        MaxNumberOfMessages=max(1, min(count, SQS_RECEIVE_MAX)),
        WaitTimeSeconds=wait,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    messages: list[dict[str, Any]] = response.get("Messages", [])
    return messages


def settle(spec: MappingSpec, batch: list[dict[str, Any]], ok: bool, result: Any) -> set[str]:
    """The message ids of `batch` that stay on the queue after the function answered: every one on a
    function error or an invalid partial-batch response, else those it listed in `batchItemFailures`
    (with ReportBatchItemFailures; without it, none)."""
    ids = {message["MessageId"] for message in batch}
    if not ok:
        return ids  # the whole batch becomes visible again after the visibility timeout
    if not spec.report_failures:
        return set()
    failed = _reported_failures(result, ids)
    return ids if failed is None else failed  # an invalid partial-batch response fails the whole batch


def delete_succeeded(sqs: Any, spec: MappingSpec, batch: list[dict[str, Any]], failed: set[str]) -> None:
    """Delete what succeeded, in DeleteMessageBatch calls of at most 10, as Lambda's poller does. A
    failed delete leaves its messages to reappear after the visibility timeout (a redelivery)."""
    succeeded = [m for m in batch if m["MessageId"] not in failed]
    for start in range(0, len(succeeded), SQS_RECEIVE_MAX):
        chunk = succeeded[start : start + SQS_RECEIVE_MAX]
        with contextlib.suppress(Exception):
            sqs.delete_message_batch(
                QueueUrl=spec.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )


def sqs_event(batch: list[dict[str, Any]], spec: MappingSpec, region: str) -> dict[str, Any]:
    """The SQS event Lambda's poller invokes the function with, for received messages."""
    return {"Records": [_record(message, spec.queue_arn, region) for message in batch]}


def _record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
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
        "eventSourceARN": queue_arn,
        "awsRegion": region,
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
