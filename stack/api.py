"""The REST API: IAM (SigV4) on every method, request validation from the record schema, throttling,
JSON access logs, X-Ray, JSON error bodies for every gateway error, and producer/reader policies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from stack.config import EnvironmentConfig
from stack.functions import HANDLERS_DIR, PipelineFunctions, log_retention
from stack.nag import acknowledge, ref, skip_checkov

# The one source of truth for what a record is: the same file the functions validate with.
RECORD_SCHEMA_PATH = HANDLERS_DIR / "rtp_pipeline" / "record.schema.json"

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
    "errorMessage": "$context.error.message",
    "xrayTraceId": "$context.xrayTraceId",
    "wafStatus": "$context.waf.status",
}


def load_record_schema(path: Path = RECORD_SCHEMA_PATH) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def request_schema(record: dict[str, Any], max_records: int) -> dict[str, Any]:
    """POST /records body: one record, or {"records": [1..max_records records]}."""
    item = {key: value for key, value in record.items() if key not in ("$schema", "description")}
    return {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "title": "IngestRequest",
        "oneOf": [
            item,
            {
                "type": "object",
                "required": ["records"],
                "additionalProperties": False,
                "properties": {
                    "records": {"type": "array", "minItems": 1, "maxItems": max_records, "items": item}
                },
            },
        ],
    }


class IngestApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        functions: PipelineFunctions,
        key: kms.IKey,
    ) -> None:
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
            # account; a per-environment stack must not own (or delete) it. See README "Teardown".
            cloud_watch_role=False,
            default_method_options=apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM),
            deploy_options=apigw.StageOptions(
                stage_name=api_config.stage_name,
                throttling_rate_limit=api_config.throttle_rate_limit,
                throttling_burst_limit=api_config.throttle_burst_limit,
                tracing_enabled=True,
                data_trace_enabled=False,
                metrics_enabled=True,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
            ),
        )
        # RestApi adds an `Endpoint` output with the same URL as the stack's `ApiUrl`; one is enough.
        self.rest_api.node.try_remove_child("Endpoint")
        skip_checkov(
            self.rest_api.deployment_stage,
            "CKV_AWS_120",
            "No response caching: POST /records ingests (never cacheable) and the GET routes report "
            "processing status that changes within seconds; a cache would serve stale status and "
            "cost hourly.",
        )
        acknowledge(
            self.rest_api.deployment_stage,
            "AwsSolutions-APIG6",
            "Execution logging needs the account-level API Gateway CloudWatch role, a regional "
            "singleton this per-environment stack must not own; JSON access logs and X-Ray cover every call.",
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
        methods = [post, *gets]
        for method in methods:
            acknowledge(
                method,
                "AwsSolutions-COG4",
                "Machine-to-machine API: every method uses AWS_IAM (SigV4) authorization, not Cognito.",
            )

        stage = self.rest_api.deployment_stage.stage_name
        self.producer_policy = iam.ManagedPolicy(
            self,
            "ProducerPolicy",
            description=f"{config.stack_name}: may push records (POST /records) and nothing else",
            statements=[
                iam.PolicyStatement(
                    actions=["execute-api:Invoke"],
                    resources=[self.rest_api.arn_for_execute_api("POST", "/records", stage)],
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
                        self.rest_api.arn_for_execute_api("GET", "/records/*", stage),
                        self.rest_api.arn_for_execute_api("GET", "/batches/*", stage),
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
            # Batches are legitimately larger than the rule set's 8 KB body limit; the API enforces its own.
            managed("AWSManagedRulesCommonRuleSet", 1, count_only=("SizeRestrictions_BODY",)),
            managed("AWSManagedRulesKnownBadInputsRuleSet", 2),
            managed("AWSManagedRulesAmazonIpReputationList", 3),
        ],
    )


def _visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
    )
