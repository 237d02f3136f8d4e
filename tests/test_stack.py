"""Template assertions for issue 2, for every shipped environment file (config/*.yaml).

Each test reads the session's synthesized template (tests/conftest.py) and the environment's config;
expected values come from the config, never from the template itself.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.config import EnvironmentConfig, load_config
from stack.synth import SynthResult
from tests.conftest import ENVIRONMENTS
from tests.template_tools import (
    ROOT,
    as_list,
    join_suffix,
    key_id,
    only,
    pinned_version,
    pipeline_functions,
    pipeline_queues,
    props,
    references,
    resources,
    role_statements,
    statements_for,
    tag_map,
    target,
    work_and_dead_letter_queues,
)

RECORD_SCHEMA = ROOT / "handlers" / "rtp_pipeline" / "record.schema.json"
DLQ_RETENTION_SECONDS = 14 * 24 * 3600


@pytest.fixture(params=ENVIRONMENTS)
def env(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def config(env: str) -> EnvironmentConfig:
    return load_config(env)


@pytest.fixture
def raw(env: str, templates: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    return templates[env]


_ASSERTION_TEMPLATES: dict[str, Template] = {}


@pytest.fixture
def template(env: str, raw: dict[str, Any]) -> Template:
    """aws_cdk.assertions.Template over the fixture's template (built once per environment)."""
    if env not in _ASSERTION_TEMPLATES:
        _ASSERTION_TEMPLATES[env] = Template.from_json(raw)
    return _ASSERTION_TEMPLATES[env]


def getatt_arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


# --- data -------------------------------------------------------------------------------------------


def test_kms_key_rotates_and_can_be_deleted_after_seven_days(template: Template, raw: dict) -> None:
    template.resource_count_is("AWS::KMS::Key", 1)
    template.has_resource(
        "AWS::KMS::Key",
        {
            "Properties": Match.object_like({"EnableKeyRotation": True, "PendingWindowInDays": 7}),
            "DeletionPolicy": "Delete",
        },
    )


def test_table_on_demand_pitr_ttl_gsi_and_cmk(template: Template, raw: dict) -> None:
    key = key_id(raw)
    template.resource_count_is("AWS::DynamoDB::Table", 1)
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": True},
            "SSESpecification": {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": getatt_arn(key)},
            # One index, sparse and sharded: only REJECTED records carry its keys (README, "Storage layout").
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "rejected",
                    "KeySchema": [
                        {"AttributeName": "rk", "KeyType": "HASH"},
                        {"AttributeName": "rs", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["b", "t", "e"]},
                }
            ],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        },
    )
    (_, table) = only(raw, "AWS::DynamoDB::Table")
    assert len(props(table)["GlobalSecondaryIndexes"]) == 1  # and no other index
    assert "LocalSecondaryIndexes" not in props(table)
    # The TTL attribute is the one the storage code writes (read as text: no handler import), and so are
    # the index's name and keys.
    storage = (ROOT / "handlers" / "rtp_pipeline" / "storage.py").read_text(encoding="utf-8")
    assert '"expiresAt"' in storage
    assert 'REJECTED_INDEX = "rejected"' in storage
    assert 'item["rk"], item["rs"] = rejected_index_keys(' in storage


def _bucket_policy_statements(raw: dict, bucket_id: str) -> list[dict[str, Any]]:
    policies = [
        res
        for res in resources(raw, "AWS::S3::BucketPolicy").values()
        if target(props(res)["Bucket"]) == bucket_id
    ]
    assert len(policies) == 1
    return as_list(props(policies[0])["PolicyDocument"]["Statement"])


def _denies_insecure_transport(statements: list[dict[str, Any]], action: str, resource_ids: set[str]) -> bool:
    return any(
        stmt["Effect"] == "Deny"
        and action in as_list(stmt["Action"])
        and stmt.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        and stmt.get("Principal") in ({"AWS": "*"}, "*")
        and resource_ids <= references(stmt["Resource"])
        for stmt in statements
    )


def test_buckets_block_public_access_and_require_tls(raw: dict) -> None:
    buckets = resources(raw, "AWS::S3::Bucket")
    assert buckets
    for bucket_id, bucket in buckets.items():
        assert props(bucket)["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, bucket_id
        statements = _bucket_policy_statements(raw, bucket_id)
        assert _denies_insecure_transport(statements, "s3:*", {bucket_id}), bucket_id
        tls = next(s for s in statements if s["Effect"] == "Deny")
        # Both the bucket and its objects.
        assert any(join_suffix(r) == "/*" for r in as_list(tls["Resource"])), bucket_id


def _raw_bucket(raw: dict) -> tuple[str, dict[str, Any]]:
    key = key_id(raw)
    kms_buckets = [
        (lid, res)
        for lid, res in resources(raw, "AWS::S3::Bucket").items()
        if props(res)["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"
        ].get("KMSMasterKeyID")
        == getatt_arn(key)
    ]
    assert len(kms_buckets) == 1, "exactly one bucket (raw requests) is encrypted with the CMK"
    return kms_buckets[0]


def test_raw_bucket_uses_cmk_with_bucket_key_and_expires_raw_prefix(
    raw: dict, config: EnvironmentConfig
) -> None:
    _, bucket = _raw_bucket(raw)
    encryption = props(bucket)["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert encryption["BucketKeyEnabled"] is True
    rules = props(bucket)["LifecycleConfiguration"]["Rules"]
    raw_rules = [rule for rule in rules if rule.get("Prefix") == "raw/" and rule["Status"] == "Enabled"]
    assert len(raw_rules) == 1
    assert raw_rules[0]["ExpirationInDays"] == config.retention.raw_objects_days
    # Versioned bucket: old versions of raw objects do not linger either.
    assert raw_rules[0]["NoncurrentVersionExpiration"]["NoncurrentDays"] >= 1
    assert raw_rules[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1


def test_raw_bucket_lifecycle_follows_the_retention_choice(raw: dict, config: EnvironmentConfig) -> None:
    """Issue 12: the replay window is the raw retention; the optional transition is the config's, and small
    objects stay in S3 Standard (S3's default since September 2024, stated in the template)."""
    _, bucket = _raw_bucket(raw)
    lifecycle = props(bucket)["LifecycleConfiguration"]
    assert lifecycle["TransitionDefaultMinimumObjectSize"] == "all_storage_classes_128K"
    (rule,) = [rule for rule in lifecycle["Rules"] if rule.get("Prefix") == "raw/"]
    retention = config.retention
    if retention.raw_storage_class is None:
        assert "Transitions" not in rule and "Transition" not in rule
    else:
        assert rule["Transitions"] == [
            {"StorageClass": retention.raw_storage_class, "TransitionInDays": retention.raw_transition_days}
        ]
        assert rule["ExpirationInDays"] > rule["Transitions"][0]["TransitionInDays"]


# --- queues and processing --------------------------------------------------------------------------


def test_queues_encrypted_tls_only_with_dlq_and_redrive(raw: dict, config: EnvironmentConfig) -> None:
    key = key_id(raw)
    work, replay, dead_letters = pipeline_queues(raw)
    queues = resources(raw, "AWS::SQS::Queue")
    assert set(queues) == {work, replay, dead_letters}
    for queue_id in (work, replay, dead_letters):
        assert props(queues[queue_id])["KmsMasterKeyId"] == getatt_arn(key), queue_id
        policies = [
            res
            for res in resources(raw, "AWS::SQS::QueuePolicy").values()
            if queue_id in {target(q) for q in props(res)["Queues"]}
        ]
        assert len(policies) == 1, queue_id
        statements = as_list(props(policies[0])["PolicyDocument"]["Statement"])
        assert _denies_insecure_transport(statements, "sqs:*", {queue_id}), queue_id

    processor_timeout = config.functions.processor.timeout_seconds
    for queue_id in (work, replay):
        queue_props = props(queues[queue_id])
        assert queue_props["VisibilityTimeout"] >= 6 * processor_timeout
        assert queue_props["VisibilityTimeout"] == config.queue_visibility_timeout_seconds
        assert queue_props["RedrivePolicy"]["maxReceiveCount"] == config.processing.max_receive_count
    assert props(queues[dead_letters])["MessageRetentionPeriod"] == DLQ_RETENTION_SECONDS


def test_event_source_mapping_reports_batch_item_failures(
    template: Template, raw: dict, config: EnvironmentConfig
) -> None:
    work, replay, _ = pipeline_queues(raw)
    processor = pipeline_functions(raw)["processor"]
    template.resource_count_is("AWS::Lambda::EventSourceMapping", 2)
    processing = config.processing
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": getatt_arn(work),
            "FunctionName": {"Ref": processor},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BatchSize": processing.batch_size,
            "MaximumBatchingWindowInSeconds": processing.max_batching_window_seconds,
            "ScalingConfig": {"MaximumConcurrency": processing.max_concurrency},
        },
    )
    # The replay queue's own mapping: one message per invocation, its own cap on concurrent instances.
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": getatt_arn(replay),
            "FunctionName": {"Ref": processor},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "BatchSize": 1,
            "ScalingConfig": {"MaximumConcurrency": processing.replay_concurrency},
        },
    )


# --- functions --------------------------------------------------------------------------------------


def test_powertools_layer_version_is_the_pinned_library() -> None:
    from stack.functions import POWERTOOLS_LAYER_PARAMETER, POWERTOOLS_VERSION

    pin = pinned_version("aws-lambda-powertools")
    assert pin == POWERTOOLS_VERSION
    assert importlib.metadata.version("aws-lambda-powertools") == pin, "tests must run the layer's version"
    assert f"/aws/service/powertools/python/arm64/python3.14/{pin}" == POWERTOOLS_LAYER_PARAMETER


def test_functions_arm64_py314_xray_own_logs_and_powertools_layer(
    raw: dict, config: EnvironmentConfig
) -> None:
    pin = pinned_version("aws-lambda-powertools")
    log_groups = resources(raw, "AWS::Logs::LogGroup")
    seen_groups: set[str] = set()
    for name, function_id in pipeline_functions(raw).items():
        p = props(raw["Resources"][function_id])
        settings = getattr(config.functions, name)
        assert p["Architectures"] == ["arm64"], name
        assert p["Runtime"] == "python3.14", name
        assert p["TracingConfig"] == {"Mode": "Active"}, name
        assert p["MemorySize"] == settings.memory_mb, name
        assert p["Timeout"] == settings.timeout_seconds, name
        group = target(p["LoggingConfig"]["LogGroup"])
        assert group in log_groups and group not in seen_groups, name
        seen_groups.add(group)
        assert props(log_groups[group])["RetentionInDays"] == config.retention.log_days, name
        assert len(p["Layers"]) == 1, name
        parameter = target(p["Layers"][0])
        assert raw["Parameters"][parameter] == {
            "Type": "AWS::SSM::Parameter::Value<String>",
            "Default": f"/aws/service/powertools/python/arm64/python3.14/{pin}",
        }


def test_no_function_dlq_or_async_settings(raw: dict) -> None:
    """All three functions are invoked synchronously (API Gateway) or by an event source mapping:
    function DLQs, async retry and destinations never apply to them."""
    assert not resources(raw, "AWS::Lambda::EventInvokeConfig")
    for function_id, function in resources(raw, "AWS::Lambda::Function").items():
        assert "DeadLetterConfig" not in props(function), function_id


def test_reserved_concurrency_only_where_config_asks(raw: dict, config: EnvironmentConfig) -> None:
    for name, function_id in pipeline_functions(raw).items():
        wanted = getattr(config.functions, name).reserved_concurrency
        assert props(raw["Resources"][function_id]).get("ReservedConcurrentExecutions") == wanted, name
    provider_like = set(resources(raw, "AWS::Lambda::Function")) - set(pipeline_functions(raw).values())
    for function_id in provider_like:
        assert "ReservedConcurrentExecutions" not in props(raw["Resources"][function_id])


def test_provisioned_concurrency_alias_only_when_configured(raw: dict, config: EnvironmentConfig) -> None:
    aliases = resources(raw, "AWS::Lambda::Alias")
    wanted = config.functions.ingest.provisioned_concurrency
    post = _method(raw, "POST", "records")
    ingest = pipeline_functions(raw)["ingest"]
    if wanted:
        assert len(aliases) == 1
        alias_id, alias = next(iter(aliases.items()))
        assert target(props(alias)["FunctionName"]) == ingest
        assert props(alias)["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": wanted}
        assert alias_id in references(props(post)["Integration"]["Uri"]), "API must invoke the warm alias"
    else:
        assert not aliases
        assert not resources(raw, "AWS::Lambda::Version")
        assert ingest in references(props(post)["Integration"]["Uri"])


def test_only_prod_asks_for_provisioned_concurrency() -> None:
    asking = {env for env in ENVIRONMENTS if load_config(env).functions.ingest.provisioned_concurrency}
    assert asking == {"prod"}


# --- least privilege --------------------------------------------------------------------------------


def test_one_role_per_function_without_managed_policies_or_wildcard_actions(raw: dict) -> None:
    functions = resources(raw, "AWS::Lambda::Function")
    roles = [target(props(fn)["Role"]) for fn in functions.values()]
    assert len(set(roles)) == len(roles) == len(functions), "one role per function"
    for role_id, role in resources(raw, "AWS::IAM::Role").items():
        assert not props(role).get("ManagedPolicyArns"), f"{role_id} has managed policies"
        for action in _role_actions(raw, role_id):
            assert "*" not in action, f"{role_id} allows wildcard action {action}"
    for policy_id, policy in resources(raw, "AWS::IAM::ManagedPolicy").items():
        for stmt in as_list(props(policy)["PolicyDocument"]["Statement"]):
            assert all("*" not in a for a in as_list(stmt["Action"])), policy_id


def _role_actions(raw: dict, role_id: str) -> set[str]:
    return {a for stmt in role_statements(raw, role_id) for a in as_list(stmt["Action"])}


def _function_role(raw: dict, name: str) -> str:
    role = target(props(raw["Resources"][pipeline_functions(raw)[name]])["Role"])
    assert role is not None
    return role


def test_ingest_may_only_put_raw_objects(raw: dict) -> None:
    bucket_id, _ = _raw_bucket(raw)
    statements = role_statements(raw, _function_role(raw, "ingest"))
    s3_actions = {a for stmt in statements for a in as_list(stmt["Action"]) if a.startswith("s3:")}
    assert s3_actions == {"s3:PutObject"}, "ingest keeps raw bodies and may read nothing from S3"
    (put,) = statements_for(statements, "s3:PutObject")
    assert put["Effect"] == "Allow"
    resource = put["Resource"]
    assert join_suffix(resource) == "/raw/*" and references(resource) == {bucket_id}


def test_query_only_reads_the_table(raw: dict) -> None:
    table, _ = only(raw, "AWS::DynamoDB::Table")
    statements = role_statements(raw, _function_role(raw, "query"))
    data_actions = {
        a for a in _role_actions(raw, _function_role(raw, "query")) if not a.startswith(("xray:", "logs:"))
    }
    assert data_actions == {"dynamodb:GetItem", "dynamodb:Query", "kms:Decrypt"}
    (get,) = statements_for(statements, "dynamodb:GetItem")
    assert as_list(get["Resource"]) == [getatt_arn(table)]
    # Query on the REJECTED index only, never on the table.
    (query,) = statements_for(statements, "dynamodb:Query")
    (index,) = as_list(query["Resource"])
    assert index == {"Fn::Join": ["", [getatt_arn(table), "/index/rejected"]]}


def test_processor_reads_raw_objects_and_never_writes_them(raw: dict) -> None:
    s3_actions = {a for a in _role_actions(raw, _function_role(raw, "processor")) if a.startswith("s3:")}
    assert s3_actions == {"s3:GetObject"}


# --- API --------------------------------------------------------------------------------------------


def _method(raw: dict, http_method: str, path_part: str) -> dict[str, Any]:
    api_resources = resources(raw, "AWS::ApiGateway::Resource")
    matches = [
        method
        for method in resources(raw, "AWS::ApiGateway::Method").values()
        if props(method)["HttpMethod"] == http_method
        and props(api_resources[target(props(method)["ResourceId"])])["PathPart"] == path_part  # type: ignore[index]
    ]
    assert len(matches) == 1, (http_method, path_part)
    return matches[0]


def test_every_api_method_uses_iam_auth(raw: dict) -> None:
    methods = resources(raw, "AWS::ApiGateway::Method")
    assert len(methods) == 4
    for method_id, method in methods.items():
        assert props(method)["AuthorizationType"] == "AWS_IAM", method_id
    _method(raw, "POST", "records")
    _method(raw, "GET", "records")
    _method(raw, "GET", "{id}")
    _method(raw, "GET", "{batchId}")
    _, api = only(raw, "AWS::ApiGateway::RestApi")
    assert props(api)["EndpointConfiguration"] == {"Types": ["REGIONAL"]}


def test_post_records_validates_body_with_model_from_record_schema(
    raw: dict, config: EnvironmentConfig
) -> None:
    record = json.loads(RECORD_SCHEMA.read_text(encoding="utf-8"))
    post = props(_method(raw, "POST", "records"))
    validator = props(raw["Resources"][target(post["RequestValidatorId"])])
    assert validator["ValidateRequestBody"] is True
    model = props(raw["Resources"][target(post["RequestModels"]["application/json"])])
    assert model["ContentType"] == "application/json"
    schema = model["Schema"]
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    single, batch = schema["oneOf"]
    items = batch["properties"]["records"]
    assert batch["required"] == ["records"] and batch["additionalProperties"] is False
    assert items["maxItems"] == config.api.max_records_per_request and items["minItems"] == 1
    assert items["items"] == single
    # Every constraint of the schema file is in the model, unchanged (descriptions aside).
    assert single["type"] == record["type"]
    assert single["required"] == record["required"]
    assert single["additionalProperties"] == record["additionalProperties"]
    assert set(single["properties"]) == set(record["properties"])
    for name, definition in record["properties"].items():
        assert single["properties"][name] == definition, name


def test_get_records_requires_status_and_since_as_the_query_function_reads_them(raw: dict) -> None:
    listing = props(_method(raw, "GET", "records"))
    validator = props(raw["Resources"][target(listing["RequestValidatorId"])])
    assert validator["ValidateRequestParameters"] is True
    assert listing["RequestParameters"] == {
        "method.request.querystring.status": True,
        "method.request.querystring.since": True,
        "method.request.querystring.until": False,
        "method.request.querystring.order": False,
        "method.request.querystring.limit": False,
        "method.request.querystring.next": False,
    }
    query = (ROOT / "handlers" / "rtp_pipeline" / "query.py").read_text(encoding="utf-8")
    for name in ("status", "since", "until", "order", "limit", "next"):
        assert f'params.get("{name}")' in query or f'params["{name}"]' in query, name


def _stage(raw: dict) -> dict[str, Any]:
    return props(only(raw, "AWS::ApiGateway::Stage")[1])


def test_stage_throttling_json_access_logs_tracing_error_execution_logs_no_data_trace(
    raw: dict, config: EnvironmentConfig
) -> None:
    stage = _stage(raw)
    assert stage["StageName"] == config.api.stage_name
    assert stage["TracingEnabled"] is True
    (settings,) = stage["MethodSettings"]
    assert settings["HttpMethod"] == "*" and settings["ResourcePath"] == "/*"
    assert settings["ThrottlingRateLimit"] == config.api.throttle_rate_limit
    assert settings["ThrottlingBurstLimit"] == config.api.throttle_burst_limit
    assert settings["DataTraceEnabled"] is False  # never request or response bodies in the logs
    assert settings["LoggingLevel"] == "ERROR"  # the account role is ensured first (test_cross_service.py)
    access = stage["AccessLogSetting"]
    group = target(access["DestinationArn"])
    log_group = raw["Resources"][group]
    assert log_group["Type"] == "AWS::Logs::LogGroup" and log_group["DeletionPolicy"] == "Delete"
    assert props(log_group)["RetentionInDays"] == config.retention.log_days
    fields = json.loads(render_access_log(access["Format"], error_message="Forbidden"))
    assert {"requestId", "status", "httpMethod", "resourcePath", "responseLatency", "xrayTraceId"} <= set(
        fields
    )


def test_execution_log_group_is_the_stages_and_is_deleted_with_the_stack(
    raw: dict, config: EnvironmentConfig
) -> None:
    """API Gateway writes execution logs to `API-Gateway-Execution-Logs_{restApiId}/{stage}` and creates it
    if missing (set-up-logging.html): the stack creates exactly that group first, so it is deleted too."""
    api_id, _ = only(raw, "AWS::ApiGateway::RestApi")
    _, stage = only(raw, "AWS::ApiGateway::Stage")
    named = {
        lid: props(res)["LogGroupName"]
        for lid, res in resources(raw, "AWS::Logs::LogGroup").items()
        if "LogGroupName" in props(res)
    }
    assert list(named.values()) == [
        {"Fn::Join": ["", ["API-Gateway-Execution-Logs_", {"Ref": api_id}, f"/{config.api.stage_name}"]]}
    ]
    (group_id,) = named
    group = raw["Resources"][group_id]
    assert (
        group["DeletionPolicy"] == "Delete" and props(group)["RetentionInDays"] == config.retention.log_days
    )
    assert props(group)["KmsKeyId"] == getatt_arn(key_id(raw))
    assert group_id in stage["DependsOn"], "created before the stage logs, deleted after it"


# What API Gateway substitutes for each variable: plain text, except messageString, which it delivers as a
# JSON string already (https://docs.aws.amazon.com/apigateway/latest/developerguide/
# api-gateway-mapping-template-reference.html#context-variable-reference).
def render_access_log(template: str, error_message: str) -> str:
    def value(variable: re.Match[str]) -> str:
        if variable.group(0) == "$context.error.messageString":
            return json.dumps(error_message)
        return error_message if variable.group(0) == "$context.error.message" else "x"

    return re.sub(r"\$context\.[A-Za-z.]+", value, template)


ERROR_MESSAGES = st.text(st.characters(codec="utf-8"), max_size=200)  # quotes, backslashes, newlines


@given(message=ERROR_MESSAGES)
@settings(max_examples=50, deadline=None)
def test_access_log_line_is_json_whatever_the_error_message(message: str) -> None:
    """Every access log line parses, and the message arrives intact: quotes, backslashes, newlines."""
    from stack.api import access_log_format

    line = json.loads(render_access_log(access_log_format(), error_message=message))
    assert line["errorMessage"] == message


def test_hand_quoted_error_message_would_break_the_line() -> None:
    """Guard for the test above: the old format, `"$context.error.message"`, is not JSON for a message with
    a quote in it (API Gateway's own validation messages have them)."""
    from stack.api import ACCESS_LOG_FIELDS, access_log_format

    old = access_log_format({**ACCESS_LOG_FIELDS, "errorMessage": "$context.error.message"})
    with pytest.raises(json.JSONDecodeError):
        json.loads(render_access_log(old, error_message='Invalid request body: "data" is required'))


def _render_gateway_template(text: str) -> Any:
    """Substitute API Gateway's variables as it would (messageString is already a quoted string)."""
    text = text.replace("$context.error.messageString", json.dumps("Too Many Requests"))
    return json.loads(re.sub(r"\$context\.[A-Za-z.]+", "x", text))


def test_gateway_responses_are_json_errors(raw: dict) -> None:
    responses = {
        props(res)["ResponseType"]: props(res)
        for res in resources(raw, "AWS::ApiGateway::GatewayResponse").values()
    }
    assert {"DEFAULT_4XX", "DEFAULT_5XX", "THROTTLED", "ACCESS_DENIED", "BAD_REQUEST_BODY"} <= set(responses)
    assert responses["THROTTLED"]["StatusCode"] == "429"
    assert responses["REQUEST_TOO_LARGE"]["StatusCode"] == "413"
    for response_type, response in responses.items():
        body = _render_gateway_template(response["ResponseTemplates"]["application/json"])
        assert set(body) == {"error"}, response_type
        assert {"code", "message", "details", "requestId"} <= set(body["error"]), response_type
        assert isinstance(body["error"]["details"], list), response_type


def test_producer_and_reader_policies_and_outputs(raw: dict) -> None:
    api_id, _ = only(raw, "AWS::ApiGateway::RestApi")
    policies = resources(raw, "AWS::IAM::ManagedPolicy")
    assert len(policies) == 2
    outputs = raw["Outputs"]
    producer = str(target(outputs["ProducerPolicyArn"]["Value"]))
    reader = str(target(outputs["ReaderPolicyArn"]["Value"]))
    assert {producer, reader} == set(policies)

    def routes(policy_id: str) -> set[str]:
        (stmt,) = as_list(props(policies[policy_id])["PolicyDocument"]["Statement"])
        assert stmt["Effect"] == "Allow" and as_list(stmt["Action"]) == ["execute-api:Invoke"]
        resources_ = as_list(stmt["Resource"])
        assert all(api_id in references(r) for r in resources_)
        return {str(join_suffix(r)) for r in resources_}

    assert routes(producer) == {"/POST/records"}
    assert routes(reader) == {"/GET/records", "/GET/records/*", "/GET/batches/*"}
    # The CLI discovers the environment from these; the RestApi's own duplicate URL output is gone.
    expected = {"ApiUrl", "TableName", "RawBucketName", "WorkQueueUrl", "DeadLetterQueueUrl", "AlarmTopicArn"}
    assert expected <= set(outputs)
    assert not [name for name in outputs if name.startswith("IngestApiEndpoint")]


def test_waf_only_where_configured(raw: dict, config: EnvironmentConfig) -> None:
    acls = resources(raw, "AWS::WAFv2::WebACL")
    associations = resources(raw, "AWS::WAFv2::WebACLAssociation")
    if not config.api.waf:
        assert not acls and not associations
        return
    (acl_id, acl), (association,) = next(iter(acls.items())), list(associations.values())
    assert props(acl)["Scope"] == "REGIONAL"
    stage_id, _ = only(raw, "AWS::ApiGateway::Stage")
    assert stage_id in references(props(association)["ResourceArn"])
    assert target(props(association)["WebACLArn"]) == acl_id
    limits = [
        rule["Statement"]["RateBasedStatement"]["Limit"]
        for rule in props(acl)["Rules"]
        if "RateBasedStatement" in rule["Statement"]
    ]
    assert limits == [config.api.waf_rate_limit_per_5min]


@given(
    limit=st.integers(min_value=0, max_value=10**9),
    value=st.integers(min_value=0, max_value=10**10),
    zeros=st.integers(min_value=0, max_value=3),
)
@settings(max_examples=300, deadline=None)
def test_content_length_pattern_matches_exactly_the_larger_numbers(
    limit: int, value: int, zeros: int
) -> None:
    from stack.api import decimal_above

    pattern = decimal_above(limit)
    # WAF: no capturing groups; a regex string of at most 512 characters (RegexMatchStatement, WAF API).
    assert re.compile(pattern).groups == 0 and len(pattern) <= 512
    assert (re.fullmatch(pattern, "0" * zeros + str(value)) is not None) == (value > limit)


def test_content_length_pattern_at_the_edges() -> None:
    from stack.api import decimal_above
    from stack.config import MAX_BODY_BYTES_LIMIT

    pattern = decimal_above(MAX_BODY_BYTES_LIMIT)
    for value, matches in ((3_000_000, False), (3_000_001, True), (2_999_999, False), (10_485_760, True)):
        assert (re.fullmatch(pattern, str(value)) is not None) == matches, value
    for junk in ("", "-1", "3e9", " 3000001", "abc"):
        assert re.fullmatch(pattern, junk) is None, junk


# --- observability ----------------------------------------------------------------------------------


def _alarms(raw: dict) -> list[dict[str, Any]]:
    return [props(res) for res in resources(raw, "AWS::CloudWatch::Alarm").values()]


def _find_alarm(raw: dict, metric: str, dimension_ref: str | None = None) -> dict[str, Any]:
    found = [
        alarm
        for alarm in _alarms(raw)
        if alarm.get("MetricName") == metric
        and (dimension_ref is None or dimension_ref in references(alarm.get("Dimensions", [])))
    ]
    assert len(found) == 1, (metric, dimension_ref)
    return found[0]


def test_alarms_cover_functions_api_queues_table_with_config_thresholds(
    raw: dict, config: EnvironmentConfig
) -> None:
    limits = config.alarms
    topic, _ = only(raw, "AWS::SNS::Topic")
    for name, function_id in pipeline_functions(raw).items():
        errors = _find_alarm(raw, "Errors", function_id)
        assert (errors["Statistic"], errors["Threshold"]) == ("Sum", limits.function_errors)
        throttles = _find_alarm(raw, "Throttles", function_id)
        assert (throttles["Statistic"], throttles["Threshold"]) == ("Sum", limits.function_throttles)
        duration = _find_alarm(raw, "Duration", function_id)
        timeout_ms = getattr(config.functions, name).timeout_seconds * 1000
        assert duration["ExtendedStatistic"] == "p99"
        assert duration["Threshold"] == round(timeout_ms * limits.duration_p99_ratio_of_timeout)
        assert duration["Threshold"] < timeout_ms
    api_name = props(only(raw, "AWS::ApiGateway::RestApi")[1])["Name"]
    server_errors = _find_alarm(raw, "5XXError")
    assert server_errors["Dimensions"] == [{"Name": "ApiName", "Value": api_name}]
    assert server_errors["Threshold"] == limits.api_5xx_errors
    latency = _find_alarm(raw, "Latency")
    assert (latency["ExtendedStatistic"], latency["Threshold"]) == ("p99", limits.api_latency_p99_ms)
    work, dead_letters = work_and_dead_letter_queues(raw)
    depth = _find_alarm(raw, "ApproximateNumberOfMessagesVisible", dead_letters)
    assert depth["Statistic"] == "Maximum"
    assert (depth["ComparisonOperator"], depth["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)  # > 0
    assert depth["EvaluationPeriods"] == depth["DatapointsToAlarm"] == 1
    lag = _find_alarm(raw, "ApproximateAgeOfOldestMessage", work)
    assert (lag["Statistic"], lag["Threshold"]) == ("Maximum", limits.queue_oldest_message_age_seconds)
    table, _ = only(raw, "AWS::DynamoDB::Table")
    table_alarms = [a for a in _alarms(raw) if table in references(a.get("Metrics", []))]
    assert len(table_alarms) == 1
    metric_names = {
        m["MetricStat"]["Metric"]["MetricName"] for m in table_alarms[0]["Metrics"] if "MetricStat" in m
    }
    assert metric_names == {"ReadThrottleEvents", "WriteThrottleEvents"}
    assert table_alarms[0]["Threshold"] == limits.dynamodb_throttles

    alarms = _alarms(raw)
    assert len(alarms) == 3 * 3 + 2 + 2 + 1
    for alarm in alarms:
        assert alarm["AlarmActions"] == [{"Ref": topic}]
        assert alarm["OKActions"] == [{"Ref": topic}]
        if alarm is not depth:
            assert alarm["EvaluationPeriods"] == limits.evaluation_periods
            assert alarm["DatapointsToAlarm"] == limits.datapoints_to_alarm
        assert alarm.get("Period", limits.period_seconds) == limits.period_seconds


def test_alarm_topic_encrypted_and_key_lets_cloudwatch_publish(raw: dict) -> None:
    key = key_id(raw)
    _, topic = only(raw, "AWS::SNS::Topic")
    assert props(topic)["KmsMasterKeyId"] == getatt_arn(key)
    statements = props(raw["Resources"][key])["KeyPolicy"]["Statement"]
    cloudwatch = [
        stmt
        for stmt in statements
        if stmt["Effect"] == "Allow" and stmt.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert cloudwatch, "without this, alarm notifications to the encrypted topic are silently dropped"
    granted = {a for stmt in cloudwatch for a in as_list(stmt["Action"])}
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= granted


def test_email_subscription_only_where_configured(raw: dict, config: EnvironmentConfig) -> None:
    topic, _ = only(raw, "AWS::SNS::Topic")
    subscriptions = [props(res) for res in resources(raw, "AWS::SNS::Subscription").values()]
    if config.alarms.email is None:
        assert subscriptions == []
    else:
        assert subscriptions == [
            {"Endpoint": config.alarms.email, "Protocol": "email", "TopicArn": {"Ref": topic}}
        ]


def test_one_dashboard(template: Template) -> None:
    template.resource_count_is("AWS::CloudWatch::Dashboard", 1)


# --- tags and teardown ------------------------------------------------------------------------------


def _tag_property(type_name: str) -> str | None:
    """The tag property of a resource type per the CloudFormation registry schema cfn-lint ships."""
    if type_name.startswith("Custom::"):
        return None  # custom resources take no tags
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", type_name).schema
    tagging = schema.get("tagging", {})
    if not tagging.get("taggable", False) or "tagProperty" not in tagging:
        return None
    name = tagging["tagProperty"].split("/")[-1]
    return name if name in schema.get("properties", {}) else None


def test_config_tags_on_every_taggable_resource(raw: dict, config: EnvironmentConfig) -> None:
    expected = config.all_tags
    assert {"Environment", "Project"} <= set(expected)
    taggable = 0
    for logical_id, resource in raw["Resources"].items():
        prop = _tag_property(resource["Type"])
        if prop is None:
            continue
        assert prop == "Tags", (logical_id, prop)
        taggable += 1
        tags = tag_map(resource)
        missing = {k: v for k, v in expected.items() if tags.get(k) != v}
        assert not missing, f"{logical_id} ({resource['Type']}) lacks tags {missing}"
    assert taggable >= 30


def test_cdk_auto_delete_provider_is_tagged(raw: dict, config: EnvironmentConfig) -> None:
    provider = [
        lid for lid in resources(raw, "AWS::Lambda::Function") if lid.startswith("CustomS3AutoDeleteObjects")
    ]
    assert len(provider) == 1
    function = raw["Resources"][provider[0]]
    role = raw["Resources"][target(props(function)["Role"])]
    for resource in (function, role):
        assert tag_map(resource) == config.all_tags


def test_nothing_is_retained(raw: dict) -> None:
    for logical_id, resource in raw["Resources"].items():
        for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
            assert resource.get(policy, "Delete") == "Delete", (logical_id, policy)


def test_every_function_logs_to_a_group_the_stack_deletes(raw: dict, config: EnvironmentConfig) -> None:
    groups = resources(raw, "AWS::Logs::LogGroup")
    functions = resources(raw, "AWS::Lambda::Function")
    # Three pipeline functions, CDK's bucket auto-delete provider, the API Gateway account-logging provider.
    assert len(functions) == 5
    for function_id, function in functions.items():
        group = target(props(function).get("LoggingConfig", {}).get("LogGroup"))
        assert group in groups, f"{function_id} would log to a group Lambda creates and nobody deletes"
    api_id, _ = only(raw, "AWS::ApiGateway::RestApi")
    for group_id, log_group in groups.items():
        assert log_group.get("DeletionPolicy") == "Delete", group_id
        assert props(log_group)["RetentionInDays"] == config.retention.log_days, group_id
        # The one named group is API Gateway's execution-log group: its name holds this API's id.
        name = props(log_group).get("LogGroupName")
        assert name is None or api_id in references(name), (
            f"{group_id}: a fixed name would collide across environments"
        )


def test_no_physical_names_that_collide_between_environments(raw: dict, config: EnvironmentConfig) -> None:
    """Names CloudFormation would otherwise generate must not be fixed; the few set ones carry the env."""
    fixed = {
        "AWS::S3::Bucket": "BucketName",
        "AWS::DynamoDB::Table": "TableName",
        "AWS::SQS::Queue": "QueueName",
        "AWS::Lambda::Function": "FunctionName",
        "AWS::IAM::Role": "RoleName",
        "AWS::SNS::Topic": "TopicName",
        "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    }
    for type_name, prop in fixed.items():
        for logical_id, resource in resources(raw, type_name).items():
            assert prop not in props(resource), logical_id
    assert props(only(raw, "AWS::ApiGateway::RestApi")[1])["Name"] == config.stack_name
    assert (
        props(only(raw, "AWS::CloudWatch::Dashboard")[1])["DashboardName"] == f"{config.stack_name}-pipeline"
    )


# --- the synthesized assembly -----------------------------------------------------------------------


def test_exactly_one_stack_per_synth(env: str, synthesized: Mapping[str, SynthResult]) -> None:
    result = synthesized[env]
    assert [p.name for p in Path(result.outdir).glob("*.template.json")] == [
        f"{result.config.stack_name}.template.json"
    ]
    manifest = json.loads((Path(result.outdir) / "manifest.json").read_text(encoding="utf-8"))
    stacks = [a for a in manifest["artifacts"].values() if a["type"] == "aws:cloudformation:stack"]
    assert len(stacks) == 1
    assert stacks[0]["environment"] == "aws://unknown-account/unknown-region" or result.config.account
