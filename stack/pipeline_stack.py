"""The pipeline, read top-down: data stores -> queues -> functions -> API -> monitoring."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from stack.api import IngestApi
from stack.api_gateway_account import ApiGatewayAccountLogging
from stack.config import EnvironmentConfig
from stack.data import DataStores
from stack.functions import PipelineFunctions
from stack.observability import Monitoring, Watched
from stack.queues import WorkQueues
from stack.teardown import own_cdk_provider


class PipelineStack(Stack):
    def __init__(self, scope: Construct, config: EnvironmentConfig, **kwargs: Any) -> None:
        super().__init__(
            scope,
            config.stack_name,
            description=f"Real-time serverless data pipeline ({config.project}, environment {config.name})",
            **kwargs,
        )
        self.config = config

        self.data = DataStores(self, "Data", config=config)
        self.queues = WorkQueues(self, "Queues", config=config, key=self.data.key)
        self.functions = PipelineFunctions(
            self, "Functions", config=config, data=self.data, queues=self.queues
        )
        self.api_logging = ApiGatewayAccountLogging(self, "ApiLogging", config=config, key=self.data.key)
        self.api = IngestApi(
            self,
            "Ingest",
            config=config,
            functions=self.functions,
            key=self.data.key,
            account_logging=self.api_logging.resource,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            key=self.data.key,
            watched=Watched(
                functions={
                    "ingest": self.functions.ingest,
                    "processor": self.functions.processor,
                    "query": self.functions.query,
                },
                api=self.api.rest_api,
                queue=self.queues.work,
                dead_letters=self.queues.dead_letters,
                table=self.data.table,
            ),
        )
        own_cdk_provider(
            self, key=self.data.key, retention_days=config.retention.log_days, tags=config.all_tags
        )

        for key, value in config.all_tags.items():
            Tags.of(self).add(key, value)
        self._outputs()

    def _outputs(self) -> None:
        """What the `rtp` CLI discovers the environment by: never typed by hand."""
        values = {
            "ApiUrl": self.api.rest_api.url,
            "ProducerPolicyArn": self.api.producer_policy.managed_policy_arn,
            "ReaderPolicyArn": self.api.reader_policy.managed_policy_arn,
            "ApiAccessLogGroup": self.api.access_logs.log_group_name,
            "TableName": self.data.table.table_name,
            "RawBucketName": self.data.raw_bucket.bucket_name,
            "WorkQueueUrl": self.queues.work.queue_url,
            "ReplayQueueUrl": self.queues.replay.queue_url,
            "DeadLetterQueueUrl": self.queues.dead_letters.queue_url,
            "AlarmTopicArn": self.monitoring.topic.topic_arn,
            "DashboardName": self.monitoring.dashboard.dashboard_name,
            "IngestFunctionName": self.functions.ingest.function_name,
            "ProcessorFunctionName": self.functions.processor.function_name,
            "QueryFunctionName": self.functions.query.function_name,
            "IngestLogGroup": self.functions.log_groups["ingest"].log_group_name,
            "ProcessorLogGroup": self.functions.log_groups["processor"].log_group_name,
            "QueryLogGroup": self.functions.log_groups["query"].log_group_name,
        }
        for name, value in values.items():
            CfnOutput(self, name, value=value)
