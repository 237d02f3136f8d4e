"""The read-only query function: GET /records/{id}, GET /records?status=REJECTED, GET /batches/{batchId}."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from api_errors import answer_errors_as_json
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from rtp_pipeline.aws import client
from rtp_pipeline.query import batch_view, record_view, rejected_listing
from rtp_pipeline.settings import QUERY_SETTINGS, current_settings, require_settings
from rtp_pipeline.storage import PipelineTable

# At import (the cold start): a missing variable fails the init by name, not the first request.
require_settings(QUERY_SETTINGS)

logger = Logger()
tracer = Tracer()
app = APIGatewayRestResolver()
answer_errors_as_json(app, logger, "query")


def _table() -> PipelineTable:
    return PipelineTable(client("dynamodb"), current_settings().table_name)


@app.get("/records")
@tracer.capture_method
def list_records() -> dict[str, Any]:
    params = app.current_event.query_string_parameters or {}
    return rejected_listing(_table(), dict(params), datetime.now(UTC))


@app.get("/records/<record_id>")
@tracer.capture_method
def get_record(record_id: str) -> dict[str, Any]:
    return record_view(_table(), record_id)


@app.get("/batches/<batch_id>")
@tracer.capture_method
def get_batch(batch_id: str) -> dict[str, Any]:
    return batch_view(_table(), batch_id)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
