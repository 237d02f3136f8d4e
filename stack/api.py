"""The REST API: IAM (SigV4) on every method, request validation from the record schema, throttling,
JSON access logs, X-Ray, JSON error bodies for every gateway error, and producer/reader policies.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct, IDependable

from stack.config import EnvironmentConfig
from stack.functions import PipelineFunctions, log_retention
from stack.nag import acknowledge, ref, skip_checkov
from stack.request_model import load_record_schema, request_schema

# The one source of truth for what a record is: the same file the functions validate with.
# Query string of GET /records (the listing of REJECTED records; handlers/rtp_pipeline/query.py).
LISTING_REQUIRED = ("status", "since")
LISTING_OPTIONAL = ("until", "order", "limit", "next")

# API Gateway's own errors, in the same JSON shape the functions answer with.
GATEWAY_ERRORS: dict[apigw.ResponseType, tuple[str, str]] = {
    apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN: ("403", "MISSING_AUTHENTICATION_TOKEN"),
    apigw.ResponseType.INVALID_SIGNATURE: ("403", "INVALID_SIGNATURE"),
    apigw.ResponseType.EXPIRED_TOKEN: ("403", "EXPIRED_TOKEN"),
    apigw.ResponseType.ACCESS_DENIED: ("403", "ACCESS_DENIED"),
    apigw.ResponseType.THROTTLED: ("429", "THROTTLED"),
    apigw.ResponseType.QUOTA_EXCEEDED: ("429", "QUOTA_EXCEEDED"),
    apigw.ResponseType.REQUEST_TOO_LARGE: ("413", "PAYLOAD_TOO_LARGE"),
    apigw.ResponseType.BAD_REQUEST_BODY: ("400", "VALIDATION_ERROR"),
    apigw.ResponseType.BAD_REQUEST_PARAMETERS: ("400", "VALIDATION_ERROR"),
    apigw.ResponseType.WAF_FILTERED: ("403", "WAF_FILTERED"),
    apigw.ResponseType.DEFAULT_4_XX: ("", "CLIENT_ERROR"),
    apigw.ResponseType.DEFAULT_5_XX: ("", "INTERNAL_ERROR"),
}

ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "ip": "$context.identity.sourceIp",
    "caller": "$context.identity.caller",
    "userArn": "$context.identity.userArn",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "errorMessage": "$context.error.messageString",
    "xrayTraceId": "$context.xrayTraceId",
    "wafStatus": "$context.waf.status",
}
# Variables API Gateway substitutes as a JSON string already, quotes and escaping included: "The quoted
# value of $context.error.message" (https://docs.aws.amazon.com/apigateway/latest/developerguide/
# api-gateway-mapping-template-reference.html#context-variable-reference). Written without quotes of our
# own; a hand-quoted "$context.error.message" breaks the line's JSON whenever the message holds a quote.
PRE_QUOTED_VARIABLES = frozenset({"$context.error.messageString"})


def access_log_format(fields: dict[str, str] = ACCESS_LOG_FIELDS) -> str:
    """One JSON object per request: every value quoted by us, except variables API Gateway quotes itself."""
    parts = [
        f"{json.dumps(name)}: {value if value in PRE_QUOTED_VARIABLES else json.dumps(value)}"
        for name, value in fields.items()
    ]
    return "{" + ", ".join(parts) + "}"


class IngestApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        functions: PipelineFunctions,
        key: kms.IKey,
        account_logging: IDependable,
    ) -> None:
        """`account_logging` completes once the account lets API Gateway write CloudWatch logs
        (stack/api_gateway_account.py): the stage, which logs, is created after it."""
        super().__init__(scope, construct_id)
        api_config = config.api
        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=log_retention(config.retention.log_days),
            encryption_key=key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.rest_api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=config.stack_name,
            description=f"{config.stack_name}: push records (POST /records), read status (GET)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # The account-level CloudWatch role is a regional singleton shared by every API in the
            # account; a per-environment stack must not own (or delete) it: `account_logging` ensures it
            # instead, and leaves it in place on delete. See README "Teardown".
            cloud_watch_role=False,
            default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM),
            deploy_options=apigw.StageOptions(
                stage_name=api_config.stage_name,
                throttling_rate_limit=api_config.throttle_rate_limit,
                throttling_burst_limit=api_config.throttle_burst_limit,
                tracing_enabled=True,
                data_trace_enabled=False,
                # Execution logs at ERROR: integration and configuration failures with their cause (an
                # invoke Lambda refused, a mapping error), never request or response bodies.
                logging_level=apigw.MethodLoggingLevel.ERROR,
                metrics_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(access_log_format()),
            ),
        )
        stage = self.rest_api.deployment_stage
        # API Gateway writes execution logs to a group of this exact name, creating it if missing
        # (set-up-logging.html, "CloudWatch log formats for API Gateway"). Created here first, with the
        # retention and key of every other group, it is deleted with the stack instead of outliving it.
        self.execution_logs = logs.LogGroup(
            self,
            "ExecutionLogs",
            log_group_name=f"API-Gateway-Execution-Logs_{self.rest_api.rest_api_id}/{api_config.stage_name}",
            retention=log_retention(config.retention.log_days),
            encryption_key=key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # Created after both (and deleted before the group, so no late log line recreates it).
        stage.node.add_dependency(account_logging, self.execution_logs)
        # RestApi adds an `Endpoint` output with the same URL as the stack's `ApiUrl`; one is enough.
        self.rest_api.node.try_remove_child("Endpoint")
        acknowledge(
            stage,
            "Serverless-APIGWStructuredLogging",
            "The access log IS one JSON object per request, but its template cannot parse as JSON before "
            "substitution: $context.error.messageString is substituted already quoted and escaped, so it "
            "is written without quotes (a hand-quoted $context.error.message breaks the JSON on any quote "
            "in a message). tests/test_stack.py renders the template and parses every line.",
        )
        skip_checkov(
            self.rest_api.deployment_stage,
            "CKV_AWS_120",
            "No response caching: POST /records ingests (never cacheable) and the GET routes report "
            "processing status that changes within seconds; a cache would serve stale status and "
            "cost hourly.",
        )
        for response_type, (status, code) in GATEWAY_ERRORS.items():
            self.rest_api.add_gateway_response(
                response_type.response_type,
                type=response_type,
                status_code=status or None,
                templates={"application/json": _error_template(code)},
            )

        model = self.rest_api.add_model(
            "IngestRequest",
            content_type="application/json",
            model_name="IngestRequest",
            schema=_json_schema(request_schema(load_record_schema(), api_config.max_records_per_request)),
        )
        body_validator = self.rest_api.add_request_validator(
            "BodyValidator", validate_request_body=True, validate_request_parameters=True
        )
        params_validator = self.rest_api.add_request_validator(
            "ParamsValidator", validate_request_body=False, validate_request_parameters=True
        )

        records = self.rest_api.root.add_resource("records")
        post = records.add_method(
            "POST",
            apigw.LambdaIntegration(functions.ingest_target, proxy=True, allow_test_invoke=False),
            request_models={"application/json": model},
            request_validator=body_validator,
            request_parameters={"method.request.header.Content-Type": True},
        )
        # The two read routes: same function, one required path parameter each.
        query = apigw.LambdaIntegration(functions.query, proxy=True, allow_test_invoke=False)
        gets = [
            resource.add_resource(f"{{{param}}}").add_method(
                "GET",
                query,
                request_validator=params_validator,
                request_parameters={f"method.request.path.{param}": True},
            )
            for resource, param in (
                (records, "id"),
                (self.rest_api.root.add_resource("batches"), "batchId"),
            )
        ]
        # GET /records?status=REJECTED&since=...: the REJECTED records of a time window (the sparse index).
        # API Gateway refuses a request without `status` or `since`; the function checks their values.
        listing = records.add_method(
            "GET",
            query,
            request_validator=params_validator,
            request_parameters={
                **{f"method.request.querystring.{name}": True for name in LISTING_REQUIRED},
                **{f"method.request.querystring.{name}": False for name in LISTING_OPTIONAL},
            },
        )
        methods = [post, *gets, listing]
        for method in methods:
            acknowledge(
                method,
                "AwsSolutions-COG4",
                "Machine-to-machine API: every method uses AWS_IAM (SigV4) authorization, not Cognito.",
            )

        stage_name = stage.stage_name
        self.producer_policy = iam.ManagedPolicy(
            self,
            "ProducerPolicy",
            description=f"{config.stack_name}: may push records (POST /records) and nothing else",
            statements=[
                iam.PolicyStatement(
                    actions=["execute-api:Invoke"],
                    resources=[self.rest_api.arn_for_execute_api("POST", "/records", stage_name)],
                )
            ],
        )
        self.reader_policy = iam.ManagedPolicy(
            self,
            "ReaderPolicy",
            description=f"{config.stack_name}: may read record and batch status (GET routes) only",
            statements=[
                iam.PolicyStatement(
                    actions=["execute-api:Invoke"],
                    resources=[
                        self.rest_api.arn_for_execute_api("GET", "/records", stage_name),
                        self.rest_api.arn_for_execute_api("GET", "/records/*", stage_name),
                        self.rest_api.arn_for_execute_api("GET", "/batches/*", stage_name),
                    ],
                )
            ],
        )
        api_arn = (
            "arn:<AWS::Partition>:execute-api:<AWS::Region>:<AWS::AccountId>:"
            f"{ref(self.rest_api)}/{ref(self.rest_api.deployment_stage)}"
        )
        for route in ("records", "batches"):
            acknowledge(
                self.reader_policy,
                f"AwsSolutions-IAM5[Resource::{api_arn}/GET/{route}/*]",
                f"The trailing * is the path parameter of GET /{route}/{{id}}: any id, on GET only, "
                "on this API and stage only.",
            )

        if api_config.waf:
            self.web_acl = _web_acl(self, config)
            wafv2.CfnWebACLAssociation(
                self,
                "WebAclAssociation",
                resource_arn=self.rest_api.deployment_stage.stage_arn,
                web_acl_arn=self.web_acl.attr_arn,
            )
        else:
            acknowledge(
                self.rest_api.deployment_stage,
                "AwsSolutions-APIG3",
                f"config/{config.name}.yaml sets api.waf: false for this non-production environment "
                "(WAF costs a fixed monthly fee); staging and prod enable it. Requests still need SigV4.",
            )


def _error_template(code: str) -> str:
    # Gateway responses do plain variable substitution, no escaping: only `messageString` is delivered
    # already quoted. `validationErrorString` holds raw double quotes (e.g. `(["data"])`), so it would
    # break the JSON body; it is left out here and out of the access log for the same reason. The
    # function repeats the schema check with per-record details (index, field) for what reaches it.
    return (
        f'{{"error": {{"code": "{code}", "message": $context.error.messageString, '
        '"details": [], "requestId": "$context.requestId"}}'
    )


def _json_schema(schema: dict[str, Any]) -> apigw.JsonSchema:
    """Dict (draft-04 JSON) -> CDK JsonSchema, recursively."""
    mapping = {
        "$schema": "schema",
        "minLength": "min_length",
        "maxLength": "max_length",
        "minItems": "min_items",
        "maxItems": "max_items",
        "additionalProperties": "additional_properties",
        "oneOf": "one_of",
    }
    kwargs: dict[str, Any] = {}
    for key, value in schema.items():
        name = mapping.get(key, key)
        if key == "$schema":
            value = apigw.JsonSchemaVersion.DRAFT4
        elif key == "type":
            value = apigw.JsonSchemaType[value.upper()]
        elif key == "properties":
            value = {prop: _json_schema(sub) for prop, sub in value.items()}
        elif key == "items":
            value = _json_schema(value)
        elif key == "oneOf":
            value = [_json_schema(sub) for sub in value]
        kwargs[name] = value
    return apigw.JsonSchema(**kwargs)


# A body larger than `api.max_body_bytes` is a client mistake and must be answered as one (4xx), never
# counted by the Api5xx alarm. Without WAF, a body whose proxy event passes Lambda's 6 MB synchronous
# payload limit never reaches the function: Lambda refuses the invoke and API Gateway answers 500
# ("If the Lambda API rejects the invocation request, API Gateway returns a 500 error code",
# https://docs.aws.amazon.com/lambda/latest/dg/services-apigateway-errors.html). WAF sees the request
# first and answers with this rule's custom response, which "take[s] precedence over any response
# specifications that you define in your protected resource"
# (https://docs.aws.amazon.com/waf/latest/developerguide/customizing-the-response-for-blocked-requests.html).
# WAF inspects at most the first 8-64 KB of a body, so the rule reads the declared size, Content-Length.
OVERSIZE_BODY_RULE = "BodyLargerThanLimit"
OVERSIZE_RESPONSE_KEY = "payload-too-large"


def oversize_body_response(max_body_bytes: int) -> str:
    """The rule's 413 body, in the API's error shape (WAF cannot insert the request id)."""
    return json.dumps(
        {
            "error": {
                "code": "PAYLOAD_TOO_LARGE",
                "message": f"Request body is larger than {max_body_bytes} bytes",
                "details": [],
                "requestId": None,
            }
        }
    )


def decimal_above(limit: int) -> str:
    """A regex matching exactly the decimal integers greater than `limit` (leading zeros allowed).

    WAF can only compare a header's *length*, not its value, so `Content-Length > limit` is a pattern: more
    digits than `limit`, or as many digits and larger at the first digit that differs. Non-capturing groups
    only: WAF supports no capturing subexpressions
    (https://docs.aws.amazon.com/waf/latest/developerguide/waf-regex-pattern-support.html).
    """
    if limit < 0:
        raise ValueError("limit must be a non-negative integer")
    digits = str(limit)
    branches = [f"[1-9][0-9]{{{len(digits)},}}"]
    for position, digit in enumerate(digits):
        if digit == "9":
            continue
        rest = len(digits) - position - 1
        larger = "9" if digit == "8" else f"[{int(digit) + 1}-9]"
        tail = "" if rest == 0 else "[0-9]" if rest == 1 else f"[0-9]{{{rest}}}"
        branches.append(digits[:position] + larger + tail)
    return "^0*(?:" + "|".join(branches) + ")$"


def _web_acl(scope: Construct, config: EnvironmentConfig) -> wafv2.CfnWebACL:
    def managed(name: str, priority: int, count_only: tuple[str, ...] = ()) -> wafv2.CfnWebACL.RuleProperty:
        overrides = [
            wafv2.CfnWebACL.RuleActionOverrideProperty(
                name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
            )
            for rule in count_only
        ]
        return wafv2.CfnWebACL.RuleProperty(
            name=name,
            priority=priority,
            override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
            statement=wafv2.CfnWebACL.StatementProperty(
                managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                    vendor_name="AWS", name=name, rule_action_overrides=overrides or None
                )
            ),
            visibility_config=_visibility(name),
        )

    return wafv2.CfnWebACL(
        scope,
        "WebAcl",
        scope="REGIONAL",
        default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
        visibility_config=_visibility(f"{config.stack_name}-waf"),
        custom_response_bodies={
            OVERSIZE_RESPONSE_KEY: wafv2.CfnWebACL.CustomResponseBodyProperty(
                content_type="APPLICATION_JSON", content=oversize_body_response(config.api.max_body_bytes)
            )
        },
        rules=[
            wafv2.CfnWebACL.RuleProperty(
                name="RateLimitPerIp",
                priority=0,
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        aggregate_key_type="IP", limit=config.api.waf_rate_limit_per_5min
                    )
                ),
                visibility_config=_visibility("RateLimitPerIp"),
            ),
            wafv2.CfnWebACL.RuleProperty(
                name=OVERSIZE_BODY_RULE,
                priority=1,
                action=wafv2.CfnWebACL.RuleActionProperty(
                    block=wafv2.CfnWebACL.BlockActionProperty(
                        custom_response=wafv2.CfnWebACL.CustomResponseProperty(
                            response_code=413, custom_response_body_key=OVERSIZE_RESPONSE_KEY
                        )
                    )
                ),
                statement=wafv2.CfnWebACL.StatementProperty(
                    regex_match_statement=wafv2.CfnWebACL.RegexMatchStatementProperty(
                        # Header names are given in lower case (WAF API reference, SingleHeader).
                        field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(
                            single_header={"Name": "content-length"}
                        ),
                        regex_string=decimal_above(config.api.max_body_bytes),
                        text_transformations=[
                            wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")
                        ],
                    )
                ),
                visibility_config=_visibility(OVERSIZE_BODY_RULE),
            ),
            # Batches are legitimately larger than the rule set's 8 KB body limit; the rule above and the
            # function enforce the API's own limit.
            managed("AWSManagedRulesCommonRuleSet", 2, count_only=("SizeRestrictions_BODY",)),
            managed("AWSManagedRulesKnownBadInputsRuleSet", 3),
            managed("AWSManagedRulesAmazonIpReputationList", 4),
        ],
    )


def _visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
    )
