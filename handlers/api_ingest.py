"""POST /records: the ingest function (thin: event in, response out; the work is in rtp_pipeline.ingest)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from api_errors import answer_errors_as_json
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from rtp_pipeline.aws import client
from rtp_pipeline.errors import ApiError
from rtp_pipeline.ingest import Ingestor
from rtp_pipeline.settings import INGEST_SETTINGS, current_settings, require_settings
from rtp_pipeline.storage import ClaimCheckQueue, PipelineTable, RawStore

# At import (the cold start): a missing variable fails the init by name, not the first request.
require_settings(INGEST_SETTINGS)

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayRestResolver()
answer_errors_as_json(app, logger, "request")


def _ingestor() -> Ingestor:
    settings = current_settings()
    return Ingestor(
        settings,
        RawStore(client("s3"), settings.bucket_name, settings.raw_prefix),
        PipelineTable(client("dynamodb"), settings.table_name),
        ClaimCheckQueue(client("sqs"), settings.queue_url),
    )


@app.post("/records")
@tracer.capture_method
def post_records() -> Response[str]:
    event = app.current_event
    headers = {name.lower(): value for name, value in (event.headers or {}).items()}
    accepted = _ingestor().accept(
        _raw_body(event.body, bool(event.is_base64_encoded)), headers, event.request_context.request_id
    )
    if not accepted.replayed:
        metrics.add_metric(name="RecordsAccepted", unit=MetricUnit.Count, value=accepted.response["accepted"])
    logger.info(
        "batch accepted",
        batch_id=accepted.response["batchId"],
        records=accepted.response["accepted"],
        replayed=accepted.replayed,
    )
    return Response(
        status_code=202,
        content_type="application/json",
        body=json.dumps(accepted.response),
        headers={"Idempotent-Replayed": "true"} if accepted.replayed else None,
    )


def _raw_body(body: str | None, is_base64_encoded: bool) -> bytes:
    """The request body exactly as the client sent it (bytes, undecoded: it is stored before parsing)."""
    if not body:
        return b""
    if not is_base64_encoded:
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error as error:
        raise ApiError(400, "INVALID_BODY", "request body is not valid base64") from error


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
