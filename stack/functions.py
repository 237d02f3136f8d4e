"""The three Lambda functions, each with its own least-privilege role and its own log group.

Runtime dependencies come from the AWS-published Powertools layer (no Docker bundling): the asset is
`handlers/` as it is, runtime code only.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from stack.config import EnvironmentConfig, FunctionConfig
from stack.data import RAW_PREFIX, REJECTED_INDEX, DataStores
from stack.nag import acknowledge, ref, skip_checkov
from stack.project import HANDLERS_DIR
from stack.queues import WorkQueues

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64
# Must equal the aws-lambda-powertools pin in requirements.txt (a test checks): the tests run the code
# against exactly the library the layer gives it in AWS.
POWERTOOLS_VERSION = "3.37.0"
POWERTOOLS_LAYER_PARAMETER = f"/aws/service/powertools/python/arm64/python3.14/{POWERTOOLS_VERSION}"

XRAY_REASON = (
    "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions (IAM reference)."
)
RAW_OBJECTS_REASON = (
    "Objects under the raw/ prefix only: keys are generated per request (raw/<date>/<batchId>.json)."
)
LOG_STREAM_REASON = "Lambda creates log streams with generated names inside this function's own log group."
NO_VPC_REASON = (
    "Reaches only AWS service endpoints (DynamoDB, S3, SQS, KMS, X-Ray) under IAM, never a private "
    "network resource; a VPC would add NAT or endpoint cost and cold-start time and no protection."
)
NO_RESERVED_CONCURRENCY_REASON = (
    "The config leaves reserved concurrency off for this function in this environment: a reservation "
    "carves capacity out of the account pool and new accounts (quota 10) cannot grant it. Set "
    "functions.<name>.reserved_concurrency to cap it; the processor is capped by the ESM maximum concurrency."
)
SYNC_DLQ_REASON = (
    "Invoked synchronously by API Gateway: the caller gets the error and retries with its idempotency "
    "key; a function DLQ only applies to asynchronous invocations and would never receive anything."
)
ESM_DLQ_REASON = (
    "Invoked by an SQS event source mapping: a function DLQ only applies to asynchronous invocations; "
    "failed messages go to the work queue's redrive DLQ after maxReceiveCount."
)


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    handler: str
    description: str
    settings: FunctionConfig


class PipelineFunctions(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        data: DataStores,
        queues: WorkQueues,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config, self._data = config, data
        layer_arn = ssm.StringParameter.value_for_string_parameter(self, POWERTOOLS_LAYER_PARAMETER)
        self._layer = lambda_.LayerVersion.from_layer_version_arn(self, "PowertoolsLayer", layer_arn)
        self._code = lambda_.Code.from_asset(str(HANDLERS_DIR), exclude=["**/__pycache__", "**/*.pyc"])
        self.log_groups: dict[str, logs.LogGroup] = {}

        common_env = {
            "TABLE_NAME": data.table.table_name,
            "POWERTOOLS_METRICS_NAMESPACE": config.stack_name,
            "POWERTOOLS_LOG_LEVEL": config.log_level,
            "RECORD_TTL_DAYS": str(config.retention.record_ttl_days),
        }
        fns = config.functions
        self.ingest = self._function(
            FunctionSpec(
                "ingest", "api_ingest.handler", "POST /records: keep raw body, validate, enqueue", fns.ingest
            ),
            {
                **common_env,
                "BUCKET_NAME": data.raw_bucket.bucket_name,
                "RAW_PREFIX": RAW_PREFIX,
                "QUEUE_URL": queues.work.queue_url,
                "MAX_RECORDS": str(config.api.max_records_per_request),
                "MAX_BODY_BYTES": str(config.api.max_body_bytes),
            },
        )
        self.processor = self._function(
            FunctionSpec(
                "processor", "queue_processor.handler", "SQS: validate, transform, store", fns.processor
            ),
            {
                **common_env,
                "BUCKET_NAME": data.raw_bucket.bucket_name,
                "RAW_PREFIX": RAW_PREFIX,
                # Where a message that ran out of time is handed back at once (queue_processor.py).
                "QUEUE_URL": queues.work.queue_url,
                "REPLAY_QUEUE_URL": queues.replay.queue_url,
            },
        )
        self.query = self._function(
            FunctionSpec(
                "query", "api_query.handler", "GET /records/{id}, GET /batches/{batchId}", fns.query
            ),
            common_env,
        )

        # Only the actions each function's code (or its event source mapping) calls, on only its resources.
        raw_objects = data.raw_bucket.arn_for_objects(f"{RAW_PREFIX}*")
        table = data.table.table_arn
        self._allow(self.ingest, ["s3:PutObject"], [raw_objects])
        self._allow(self.ingest, ["dynamodb:PutItem", "dynamodb:GetItem"], [table])  # claims, batch items
        self._allow(self.ingest, ["sqs:SendMessage"], [queues.work.queue_arn])
        self._allow(self.ingest, ["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"], [data.key.key_arn])

        self._allow(self.processor, ["s3:GetObject"], [raw_objects])
        # GetItem reads a batch's counted chunks on redelivery; a refused conditional put returns the stored
        # item itself (storage.PipelineTable._put_record); BatchWriteItem writes the records a batch owns;
        # PartiQL INSERTs (BatchExecuteStatement) write the records a client named, and need PartiQLInsert:
        # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ql-iam.html
        self._allow(
            self.processor,
            [
                "dynamodb:PartiQLInsert",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:GetItem",
                "dynamodb:BatchGetItem",
                "dynamodb:BatchWriteItem",
            ],
            [table],
        )
        # What Lambda's queue poller calls with the function's role (as in AWSLambdaSQSQueueExecutionRole).
        polled = [queues.work.queue_arn, queues.replay.queue_arn]
        self._allow(
            self.processor, ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"], polled
        )
        # The function's own call: a message that ran out of time is made visible again at once.
        self._allow(self.processor, ["sqs:ChangeMessageVisibility"], polled)
        self._allow(self.processor, ["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"], [data.key.key_arn])

        raw_finding = f"AwsSolutions-IAM5[Resource::{ref(data.raw_bucket, 'Arn')}/{RAW_PREFIX}*]"
        acknowledge(self.ingest.role, raw_finding, RAW_OBJECTS_REASON)  # type: ignore[arg-type]
        acknowledge(self.processor.role, raw_finding, RAW_OBJECTS_REASON)  # type: ignore[arg-type]

        self._allow(self.query, ["dynamodb:GetItem"], [table])
        # GET /records?status=REJECTED queries the sparse REJECTED index (stack/data.py), and only it.
        self._allow(self.query, ["dynamodb:Query"], [f"{table}/index/{REJECTED_INDEX}"])
        self._allow(self.query, ["kms:Decrypt"], [data.key.key_arn])

        processing = config.processing
        self.queue_source = self.processor.add_event_source_mapping(
            "WorkQueueSource",
            event_source_arn=queues.work.queue_arn,
            batch_size=processing.batch_size,
            max_batching_window=Duration.seconds(processing.max_batching_window_seconds),
            max_concurrency=processing.max_concurrency,
            report_batch_item_failures=True,
        )
        acknowledge(
            self.queue_source,
            "Serverless-LambdaEventSourceMappingDestination",
            "SQS event sources take no on-failure destination; failed messages go to the queue's "
            "redrive DLQ.",
        )
        # The processor may only start once it can read the queue, or the mapping fails to create.
        self.queue_source.node.add_dependency(self.processor.role)
        # `rtp replay`'s queue: the same function, at most `replay_concurrency` instances, one message per
        # invocation (a replayed request can hold 500 records; live messages never wait behind it).
        self.replay_source = self.processor.add_event_source_mapping(
            "ReplayQueueSource",
            event_source_arn=queues.replay.queue_arn,
            batch_size=1,
            max_concurrency=processing.replay_concurrency,
            report_batch_item_failures=True,
        )
        acknowledge(
            self.replay_source,
            "Serverless-LambdaEventSourceMappingDestination",
            "SQS event sources take no on-failure destination; failed replay messages go to the queue's "
            "redrive DLQ.",
        )
        self.replay_source.node.add_dependency(self.processor.role)

        # API Gateway invokes the ingest function through an alias when provisioned concurrency is asked for.
        self.ingest_target: lambda_.IFunction = self.ingest
        if fns.ingest.provisioned_concurrency:
            self.ingest_target = lambda_.Alias(
                self,
                "IngestLive",
                alias_name="live",
                version=self.ingest.current_version,
                provisioned_concurrent_executions=fns.ingest.provisioned_concurrency,
            )

        for fn in (self.ingest, self.query):
            acknowledge(fn, "Serverless-LambdaDLQ", SYNC_DLQ_REASON)
            skip_checkov(fn, "CKV_AWS_116", SYNC_DLQ_REASON)
        acknowledge(self.processor, "Serverless-LambdaDLQ", ESM_DLQ_REASON)
        skip_checkov(self.processor, "CKV_AWS_116", ESM_DLQ_REASON)

    def _function(self, spec: FunctionSpec, environment: dict[str, str]) -> lambda_.Function:
        config, key = self._config, self._data.key
        log_group = logs.LogGroup(
            self,
            f"{spec.name.title()}Logs",
            retention=log_retention(config.retention.log_days),
            encryption_key=key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.log_groups[spec.name] = log_group
        role = iam.Role(
            self,
            f"{spec.name.title()}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{config.stack_name} {spec.name} function: least privilege, no managed policies",
        )
        fn = lambda_.Function(
            self,
            spec.name.title(),
            description=f"{config.stack_name} {spec.name}: {spec.description}",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=spec.handler,
            code=self._code,
            layers=[self._layer],
            role=role,
            memory_size=spec.settings.memory_mb,
            timeout=Duration.seconds(spec.settings.timeout_seconds),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            environment={**environment, "POWERTOOLS_SERVICE_NAME": spec.name},
            environment_encryption=key,
            reserved_concurrent_executions=spec.settings.reserved_concurrency,
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],  # the ARN CDK gives ends in ":*": its streams
            )
        )
        cfn_function = fn.node.default_child
        assert isinstance(cfn_function, lambda_.CfnFunction)
        # CDK makes the function depend on its role and the role's policy; the `Role` GetAtt already
        # orders the role (cfn-lint W3005), so keep only the policy: the function must not start before it
        # may reach the table and queue.
        policy = role.node.find_child("DefaultPolicy").node.default_child
        assert isinstance(policy, iam.CfnPolicy)
        cfn_function.add_override("DependsOn", [Stack.of(self).get_logical_id(policy)])
        skip_checkov(cfn_function, "CKV_AWS_117", NO_VPC_REASON)
        if spec.settings.reserved_concurrency is None:
            skip_checkov(cfn_function, "CKV_AWS_115", NO_RESERVED_CONCURRENCY_REASON)
        _acknowledge_granular(
            role,
            {
                "AwsSolutions-IAM5[Resource::*]": XRAY_REASON,
                f"AwsSolutions-IAM5[Resource::{ref(log_group, 'Arn')}:*]": LOG_STREAM_REASON,
            },
        )
        return fn

    def _allow(self, fn: lambda_.Function, actions: list[str], resources: list[str]) -> None:
        fn.add_to_role_policy(iam.PolicyStatement(actions=actions, resources=resources))


def _acknowledge_granular(scope: Construct, reasons: dict[str, str]) -> None:
    for rule_id, reason in reasons.items():
        acknowledge(scope, rule_id, reason)


R = logs.RetentionDays
_RETENTION = {
    1: R.ONE_DAY, 3: R.THREE_DAYS, 5: R.FIVE_DAYS, 7: R.ONE_WEEK, 14: R.TWO_WEEKS, 30: R.ONE_MONTH,
    60: R.TWO_MONTHS, 90: R.THREE_MONTHS, 120: R.FOUR_MONTHS, 150: R.FIVE_MONTHS, 180: R.SIX_MONTHS,
    365: R.ONE_YEAR, 400: R.THIRTEEN_MONTHS, 545: R.EIGHTEEN_MONTHS, 731: R.TWO_YEARS,
    1096: R.THREE_YEARS, 1827: R.FIVE_YEARS, 3653: R.TEN_YEARS,
}  # fmt: skip


def log_retention(days: int) -> logs.RetentionDays:
    """The config's `retention.log_days` (one of CloudWatch's allowed values) as CDK's enum."""
    return _RETENTION[days]
