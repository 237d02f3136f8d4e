"""Where data rests: one customer-managed KMS key, the DynamoDB table and the raw-request bucket."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stack.config import EnvironmentConfig
from stack.nag import acknowledge, skip_checkov

RAW_PREFIX = "raw/"
# The sparse index of REJECTED records (its name is also handlers/rtp_pipeline/storage.py REJECTED_INDEX).
REJECTED_INDEX = "rejected"


class DataStores(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, construct_id)

        self.key = kms.Key(
            self,
            "Key",
            description=f"{config.stack_name}: table, bucket, queues, alarm topic and log groups",
            enable_key_rotation=True,
            pending_window=Duration.days(7),
            removal_policy=RemovalPolicy.DESTROY,
        )
        logs_arn = f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:*"
        # CloudWatch Logs encrypts the stack's log groups with this key; scoped to this account's groups.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],  # in a key policy, "*" means this key
                conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": logs_arn}},
            )
        )
        # CloudWatch alarms publish to the KMS-encrypted SNS topic; without this their notifications are
        # silently dropped ("CloudWatch Alarms does not have authorization to access the SNS topic encryption
        # key"). The grant SNS documents for AWS event sources on encrypted topics
        # (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services),
        # exactly as documented there and in https://repost.aws/knowledge-center/cloudwatch-configure-alarm-sns:
        # no condition. Neither page says CloudWatch's KMS call carries aws:SourceAccount, and a condition it
        # does not meet would drop every notification silently. The scoping lives in the topic policy
        # (only this account's alarms in this region may publish: stack/observability.py), and no other
        # topic can use this key without this key policy granting its owner.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )

        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute="expiresAt",
            removal_policy=RemovalPolicy.DESTROY,
        )
        # The one index, sparse: only REJECTED record items carry its keys (`rk` = hour#shard, `rs` =
        # processedAt#recordId; handlers/rtp_pipeline/storage.py, rejected_index_keys), so PROCESSED records
        # cost nothing here. An index write is metered on the size of the index entry (the table's and the
        # index's keys, the projected attributes and 100 bytes), and only for items that carry the index
        # keys (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html
        # #GSI.ThroughputConsiderations, and "Storage considerations" on the same page). INCLUDE b, t, e
        # rather than KEYS_ONLY: a typical entry (keys about 150 bytes, batch 26, type, a reason of a few
        # hundred bytes) stays under 1 KB, one write unit like a KEYS_ONLY entry, and listing a page is one
        # Query (0.5 read unit per 4 KB) instead of one GetItem (0.5 read unit per item) per row. Only a
        # reason of more than about 800 bytes (capped at 2,000 characters) costs a second index write unit.
        self.table.add_global_secondary_index(
            index_name=REJECTED_INDEX,
            partition_key=dynamodb.Attribute(name="rk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="rs", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=["b", "t", "e"],
        )
        # Server access logs cannot be delivered to a KMS-encrypted bucket, so they get their own.
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(config.retention.log_days),
                    noncurrent_version_expiration=Duration.days(1),
                )
            ],
            removal_policy=RemovalPolicy.DESTROY,
            auto_delete_objects=True,
        )
        self_logging = (
            "This is the server access log bucket of the raw bucket; logging it to itself would loop."
        )
        acknowledge(self.access_logs, "AwsSolutions-S1", self_logging)
        skip_checkov(self.access_logs, "CKV_AWS_18", self_logging)

        self.raw_bucket = s3.Bucket(
            self,
            "RawBucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="raw-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-raw-requests",
                    prefix=RAW_PREFIX,
                    expiration=Duration.days(config.retention.raw_objects_days),
                    transitions=raw_transitions(config),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            # S3's default since September 2024, stated so the template says it: objects under 128 KB
            # (small requests) stay in S3 Standard, where they are not billed as 128 KB
            # (stack/retention.py has the sources).
            transition_default_minimum_object_size=s3.TransitionDefaultMinimumObjectSize.ALL_STORAGE_CLASSES_128_K,
            removal_policy=RemovalPolicy.DESTROY,
            auto_delete_objects=True,
        )


def raw_transitions(config: EnvironmentConfig) -> list[s3.Transition] | None:
    """The raw bucket's one optional transition (validated in stack/config.py against S3's rules)."""
    retention = config.retention
    if retention.raw_transition_days is None or retention.raw_storage_class is None:
        return None
    return [
        s3.Transition(
            storage_class=s3.StorageClass(retention.raw_storage_class),
            transition_after=Duration.days(retention.raw_transition_days),
        )
    ]
