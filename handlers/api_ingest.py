"""POST /records: the ingest function (thin: event in, response out; the work is in rtp_pipeline.ingest)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from rtp_pipeline.aws import client
from rtp_pipeline.errors import ApiError
from rtp_pipeline.ingest import Ingestor
from rtp_pipeline.settings import current_settings
from rtp_pipeline.storage import ClaimCheckQueue, PipelineTable, RawStore

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayRestResolver()


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
    body = event.decoded_body or ""
    headers = {name.lower(): value for name, value in (event.headers or {}).items()}
    accepted = _ingestor().accept(body.encode("utf-8"), headers, event.request_context.request_id)
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


@app.exception_handler(ApiError)
def api_error(error: ApiError) -> Response[str]:
    logger.info("request refused", status=error.status, code=error.code, details=error.details[:10])
    return Response(
        status_code=error.status,
        content_type="application/json",
        body=json.dumps(error.body(app.current_event.request_context.request_id)),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
