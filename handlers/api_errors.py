"""Every answer of an API function that is not a success, in the API's one error shape
(`{"error": {code, message, details, requestId}}`), for both API functions."""

from __future__ import annotations

import json

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from rtp_pipeline.errors import ApiError


def answer_errors_as_json(app: APIGatewayRestResolver, logger: Logger, failure: str) -> None:
    """Register the resolver's error handlers. `failure` names what could not be done, for 500s."""

    def respond(error: ApiError) -> Response[str]:
        return Response(
            status_code=error.status,
            content_type="application/json",
            body=json.dumps(error.body(app.current_event.request_context.request_id)),
        )

    @app.exception_handler(ApiError)
    def api_error(error: ApiError) -> Response[str]:
        logger.info("request refused", status=error.status, code=error.code, details=error.details[:10])
        return respond(error)

    @app.not_found
    def not_found(_: NotFoundError) -> Response[str]:
        event = app.current_event
        return respond(ApiError(404, "NOT_FOUND", f"no route {event.http_method} {event.path}"))

    @app.exception_handler(Exception)
    def unexpected_error(error: Exception) -> Response[str]:
        # A real fault (a dependency failed after the SDK's retries): 500 in the API's error shape, with
        # the request id so the caller's report can be matched to this log line. Clients retry with
        # their Idempotency-Key.
        logger.exception(f"{failure} failed")
        return respond(ApiError(500, "INTERNAL_ERROR", f"the {failure} could not be completed; retry it"))
