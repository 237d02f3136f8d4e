"""GET /records/{id} and GET /batches/{batchId}: the read-only query function."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from rtp_pipeline.aws import client
from rtp_pipeline.errors import ApiError
from rtp_pipeline.query import batch_view, record_view
from rtp_pipeline.settings import current_settings
from rtp_pipeline.storage import PipelineTable

logger = Logger()
tracer = Tracer()
app = APIGatewayRestResolver()


def _table() -> PipelineTable:
    return PipelineTable(client("dynamodb"), current_settings().table_name)


@app.get("/records/<record_id>")
@tracer.capture_method
def get_record(record_id: str) -> dict[str, Any]:
    return record_view(_table(), record_id)


@app.get("/batches/<batch_id>")
@tracer.capture_method
def get_batch(batch_id: str) -> dict[str, Any]:
    return batch_view(_table(), batch_id)


@app.exception_handler(ApiError)
def api_error(error: ApiError) -> Response[str]:
    return _error_response(error)


@app.not_found
def not_found(_: NotFoundError) -> Response[str]:
    event = app.current_event
    return _error_response(ApiError(404, "NOT_FOUND", f"no route {event.http_method} {event.path}"))


@app.exception_handler(Exception)
def unexpected_error(error: Exception) -> Response[str]:
    logger.exception("query failed")
    return _error_response(ApiError(500, "INTERNAL_ERROR", "the query could not be completed; retry it"))


def _error_response(error: ApiError) -> Response[str]:
    return Response(
        status_code=error.status,
        content_type="application/json",
        body=json.dumps(error.body(app.current_event.request_context.request_id)),
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
