"""Alarms (thresholds from config) that all notify one SNS topic, and one CloudWatch dashboard."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stack.config import EnvironmentConfig
from stack.nag import acknowledge

ALARMS_OF_THIS_ACCOUNT_AND_REGION = f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*"


@dataclass(frozen=True)
class Watched:
    functions: dict[str, lambda_.Function]
    api: apigw.RestApi
    queue: sqs.Queue
    dead_letters: sqs.Queue
    table: dynamodb.Table


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        key: kms.IKey,
        watched: Watched,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self.topic = sns.Topic(self, "AlarmTopic", display_name=f"{config.stack_name} alarms", master_key=key)
        # A topic policy replaces SNS's default policy: without this statement nothing lets CloudWatch
        # publish, and alarm notifications are dropped silently (the alarm's history shows "not authorized
        # to perform: SNS:Publish"). Scoped to alarms of this account and region (confused deputy):
        # https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html and
        # https://repost.aws/knowledge-center/cloudwatch-receive-sns-for-alarm-trigger. The key's side of
        # the same rule (kms:Decrypt, kms:GenerateDataKey* for CloudWatch) is in stack/data.py.
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": ALARMS_OF_THIS_ACCOUNT_AND_REGION},
                },
            )
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowPublishThroughSSLOnly",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"Bool": {"aws:SecureTransport": "false"}},
            )
        )
        if config.alarms.email:
            email = subscriptions.EmailSubscription(config.alarms.email)
            self.topic.add_subscription(email)
            acknowledge(
                self.topic,
                "Serverless-SNSRedrivePolicy",
                "The only subscription is the on-call e-mail; SNS retries e-mail delivery itself, "
                "and the alarm state stays visible in CloudWatch and on the dashboard whatever happens "
                "to the e-mail.",
            )
        self._action = actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []
        limits = config.alarms
        period = Duration.seconds(limits.period_seconds)

        for name, fn in watched.functions.items():
            timeout_ms = getattr(config.functions, name).timeout_seconds * 1000
            self._alarm(
                f"{name.title()}Errors",
                fn.metric_errors(period=period, statistic="Sum"),
                limits.function_errors,
                f"{name} function: invocations failed (unhandled exceptions or timeouts).",
            )
            self._alarm(
                f"{name.title()}Throttles",
                fn.metric_throttles(period=period, statistic="Sum"),
                limits.function_throttles,
                f"{name} function: invocations throttled (concurrency limit reached).",
            )
            self._alarm(
                f"{name.title()}DurationP99",
                fn.metric_duration(period=period, statistic="p99"),
                round(timeout_ms * limits.duration_p99_ratio_of_timeout),
                f"{name} function: p99 duration above "
                f"{limits.duration_p99_ratio_of_timeout:.0%} of its timeout.",
            )
        self._alarm(
            "Api5xx",
            watched.api.metric_server_error(period=period, statistic="Sum"),
            limits.api_5xx_errors,
            "API: 5XX responses (function faults or integration errors).",
        )
        self._alarm(
            "ApiLatencyP99",
            watched.api.metric_latency(period=period, statistic="p99"),
            limits.api_latency_p99_ms,
            "API: p99 latency above the configured threshold.",
        )
        self._alarm(
            "DeadLetters",
            watched.dead_letters.metric_approximate_number_of_messages_visible(
                period=period, statistic="Maximum"
            ),
            1,
            "Dead-letter queue holds messages that failed processing maxReceiveCount times. "
            "Run `rtp dlq peek`.",
            evaluation_periods=1,
            datapoints=1,
        )
        self._alarm(
            "ProcessingLag",
            watched.queue.metric_approximate_age_of_oldest_message(period=period, statistic="Maximum"),
            limits.queue_oldest_message_age_seconds,
            "Work queue: oldest message older than the threshold (processing is falling behind).",
        )
        table_throttles = cloudwatch.MathExpression(
            expression="FILL(r, 0) + FILL(w, 0)",
            using_metrics={
                "r": watched.table.metric("ReadThrottleEvents", period=period, statistic="Sum"),
                "w": watched.table.metric("WriteThrottleEvents", period=period, statistic="Sum"),
            },
            label="DynamoDB throttle events",
            period=period,
        )
        self._alarm(
            "TableThrottles", table_throttles, limits.dynamodb_throttles, "DynamoDB: requests throttled."
        )

        self.dashboard = self._dashboard(watched)

    def _alarm(
        self,
        name: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        description: str,
        evaluation_periods: int | None = None,
        datapoints: int | None = None,
    ) -> None:
        limits = self._config.alarms
        alarm = cloudwatch.Alarm(
            self,
            name,
            alarm_description=f"{self._config.stack_name}: {description}",
            metric=metric,
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=evaluation_periods or limits.evaluation_periods,
            datapoints_to_alarm=datapoints or limits.datapoints_to_alarm,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms.append(alarm)

    def _dashboard(self, watched: Watched) -> cloudwatch.Dashboard:
        config = self._config
        namespace = config.stack_name
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{config.stack_name}-pipeline")

        def custom(name: str, service: str, statistic: str = "Sum") -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=namespace,
                metric_name=name,
                dimensions_map={"service": service},
                statistic=statistic,
            )

        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms), width=24, height=4)
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Records",
                left=[
                    custom("RecordsAccepted", "ingest"),
                    custom("RecordsProcessed", "processor"),
                    custom("RecordsRejected", "processor"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Ingest to processed latency (ms)",
                left=[
                    custom("IngestToProcessedLatency", "processor", "p50"),
                    custom("IngestToProcessedLatency", "processor", "p99"),
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="API",
                left=[
                    watched.api.metric_count(),
                    watched.api.metric_client_error(),
                    watched.api.metric_server_error(),
                ],
                right=[watched.api.metric_latency(statistic="p99")],
                width=8,
            ),
        )
        fns = watched.functions.values()
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Function errors", left=[fn.metric_errors() for fn in fns], width=8),
            cloudwatch.GraphWidget(
                title="Function p99 duration",
                left=[fn.metric_duration(statistic="p99") for fn in fns],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Function throttles", left=[fn.metric_throttles() for fn in fns], width=8
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Queue depth",
                left=[
                    watched.queue.metric_approximate_number_of_messages_visible(),
                    watched.dead_letters.metric_approximate_number_of_messages_visible(),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Oldest message age (s)",
                left=[watched.queue.metric_approximate_age_of_oldest_message(statistic="Maximum")],
                width=12,
            ),
        )
        return dashboard
