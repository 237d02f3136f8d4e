"""SQS -> processor function. Reports partial batch failures so only failed messages are redelivered; a
redelivered message only redoes the records not stored yet (rtp_pipeline.processing)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import transform
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from rtp_pipeline.aws import client
from rtp_pipeline.contract import transform_version
from rtp_pipeline.processing import Processor, RecordsNotDoneError
from rtp_pipeline.settings import PROCESSOR_SETTINGS, current_settings, require_settings
from rtp_pipeline.storage import ClaimCheck, PipelineTable, RawStore

# At import (the cold start): a missing variable fails the init by name, not the first request.
require_settings(PROCESSOR_SETTINGS)

logger = Logger()
tracer = Tracer()
metrics = Metrics()
batch = BatchProcessor(event_type=EventType.SQS)
# The replay queue's mapping delivers one message per invocation: a failed replay message (a lease another
# delivery holds, no time left) is the whole batch, which by default raises and counts as a function error
# (the ProcessorErrors alarm). Reported as a batch item failure instead: SQS retries it all the same, and
# one that keeps failing reaches the dead-letter queue and its alarm.
# https://docs.powertools.aws.dev/lambda/python/latest/utilities/batch/#working-with-full-batch-failures
replay_batch = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
# Written on every record item: which transform produced its outcome (`rtp replay` after a fix shows it).
TRANSFORM_VERSION = transform_version(transform)
# The wait between a record's attempts (rtp_pipeline.processing.RetryPolicy's backoff): time.sleep. The
# in-process tests put one here that notes the delay and returns at once (tests/handlers/conftest.py).
backoff_sleep: Callable[[float], None] = time.sleep


def _processor() -> Processor:
    settings = current_settings()
    return Processor(
        settings,
        RawStore(client("s3"), settings.bucket_name, settings.raw_prefix),
        PipelineTable(
            client("dynamodb"),
            settings.table_name,
            compress=settings.compress_results,
            transform_version=TRANSFORM_VERSION,
        ),
        transform.transform,
        sleep=backoff_sleep,
    )


def hand_back(record: SQSRecord) -> None:
    """Best effort: make a message whose records only lacked time visible again now, rather than after the
    queue's visibility timeout (6 x the function's timeout): the next invocation carries on at once.
    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html
    https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html"""
    settings = current_settings()
    queue_url = (
        settings.replay_queue_url if from_replay_queue(record.event_source_arn) else settings.queue_url
    )
    try:
        client("sqs").change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=record.receipt_handle, VisibilityTimeout=0
        )
    except Exception:  # the visibility timeout hands it back anyway, later
        logger.warning("could not hand the message back early", exc_info=True)


def from_replay_queue(event_source_arn: str) -> bool:
    """Whether a message came from the replay queue (a queue's ARN and its URL both end in its name)."""
    replay_url = current_settings().replay_queue_url
    return bool(replay_url) and replay_url.endswith("/" + event_source_arn.rsplit(":", 1)[-1])


@tracer.capture_method
def process_message(record: SQSRecord, lambda_context: LambdaContext) -> None:
    # Powertools calls record_handler(record=..., lambda_context=...): the parameters must have these names.
    claim = ClaimCheck.from_json(record.body)
    logger.set_correlation_id(claim.correlation_id)
    logger.append_keys(batch_id=claim.batch_id, message_id=record.message_id)
    processor = _processor()
    try:
        result = processor.process(
            claim,
            receive_count=int(record.attributes.approximate_receive_count or 1),
            remaining_ms=lambda_context.get_remaining_time_in_millis,
        )
    except Exception as error:
        logger.exception(
            "batch failed; SQS will redeliver it", receive_count=record.attributes.approximate_receive_count
        )
        processor.table.record_failure(claim.batch_id, f"{type(error).__name__}: {error}")
        if isinstance(error, RecordsNotDoneError) and error.out_of_time:
            hand_back(record)
        raise
    # Count only what this delivery stored: a redelivered message must not inflate the metrics either.
    metrics.add_metric(name="RecordsProcessed", unit=MetricUnit.Count, value=result.newly_processed)
    metrics.add_metric(name="RecordsRejected", unit=MetricUnit.Count, value=result.newly_rejected)
    if claim.replay is not None:
        # A replay's records are old: their ingest-to-processed latency would only distort the live figure.
        metrics.add_metric(
            name="RecordsReplayed",
            unit=MetricUnit.Count,
            value=result.replayed_processed + result.replayed_rejected,
        )
        if result.note:
            logger.warning("replay skipped the batch", reason=result.note, replay_id=claim.replay.replay_id)
        logger.info(
            "replay batch processed",
            replay_id=claim.replay.replay_id,
            replayed_processed=result.replayed_processed,
            replayed_rejected=result.replayed_rejected,
            processed=result.newly_processed,
            rejected=result.newly_rejected,
            skipped=result.skipped,
            transform_version=TRANSFORM_VERSION,
        )
        return
    metrics.add_metric(name="IngestToProcessedLatency", unit=MetricUnit.Milliseconds, value=result.latency_ms)
    logger.info(
        "batch processed",
        processed=result.newly_processed,
        rejected=result.newly_rejected,
        skipped=result.skipped,
        duplicates=result.duplicates,
        latency_ms=round(result.latency_ms),
        receive_count=record.attributes.approximate_receive_count,
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    records = event.get("Records") or [{}]
    replaying = from_replay_queue(str(records[0].get("eventSourceARN", "")))
    return process_partial_response(
        event=event,
        record_handler=process_message,
        processor=replay_batch if replaying else batch,
        context=context,
    )
