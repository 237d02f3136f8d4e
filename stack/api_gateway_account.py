"""The API Gateway account's CloudWatch Logs role, ensured before the stage that logs.

A stage with access logging (or execution logging) cannot be created in an account and region whose
API Gateway setting `cloudwatchRoleArn` was never set: "CloudWatch Logs role ARN must be set in account
settings to enable logging", and the stack rolls back
(https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-logging.html, "Permissions for
CloudWatch logging"; public reports: aws-samples/amazon-bedrock-knowledgebase-slackbot#6 (CDK, access log
only), seasketch/geoprocessing#375, sst#1556, aws-samples/serverless-patterns#620).

The setting is one value per account and region, shared by every API there. `AWS::ApiGateway::Account` (or
CDK's `cloudWatchRole: true`) would make this per-environment stack own it: environments would overwrite
each other's role, and deleting one stack would remove the role every other API logs with. Instead, a small
custom resource (code: stack/custom_resources/api_gateway_account/handler.py) leaves a working role alone,
otherwise creates or reuses one well-known role, `APIGatewayCloudWatchLogsRole-rtp`, sets it, and on delete
does nothing. Both the role and the setting outlive the stack, on purpose (README "Teardown").

The provider is one Python function with its own role (only the calls the handler makes, on only their
resources), its own stack-owned log group (retention, KMS, deleted with the stack) and the config's tags.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stack.config import EnvironmentConfig
from stack.functions import ARCHITECTURE, RUNTIME, log_retention
from stack.nag import acknowledge, ref, skip_checkov

ASSET_DIR = Path(__file__).resolve().parent / "custom_resources" / "api_gateway_account"
RESOURCE_TYPE = "Custom::ApiGatewayAccountLogging"
# One role per account for API Gateway logging, shared by every rtp environment and region (IAM is global).
ROLE_NAME = "APIGatewayCloudWatchLogsRole-rtp"
# The AWS managed policy the API Gateway documentation names for this role (set-up-logging.html).
MANAGED_POLICY = "service-role/AmazonAPIGatewayPushToCloudWatchLogs"
APIGATEWAY_PRINCIPAL = "apigateway.amazonaws.com"

OWNER = "The API Gateway account-logging provider (runs only when CloudFormation creates or updates it)"


class ApiGatewayAccountLogging(Construct):
    """`self.resource` completes once API Gateway may write CloudWatch logs in this account and region."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=log_retention(config.retention.log_days),
            encryption_key=key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        shared_role = stack.format_arn(service="iam", region="", resource="role", resource_name=ROLE_NAME)
        any_role = stack.format_arn(service="iam", region="", resource="role", resource_name="*")
        self.policy_arn = f"arn:{Aws.PARTITION}:iam::aws:policy/{MANAGED_POLICY}"
        account_settings = f"arn:{Aws.PARTITION}:apigateway:{Aws.REGION}::/account"
        # Exactly the calls handler.py makes. The CloudFormation handler of AWS::ApiGateway::Account needs
        # the same apigateway:PATCH, iam:GetRole and iam:PassRole (tests/test_cross_service.py checks).
        permissions = iam.PolicyDocument(
            statements=[
                iam.PolicyStatement(
                    sid="WriteOwnLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[self.log_group.log_group_arn],  # ends in ":*": its streams
                ),
                iam.PolicyStatement(
                    sid="ReadAndSetTheAccountSetting",
                    actions=["apigateway:GET", "apigateway:PATCH"],
                    resources=[account_settings],
                ),
                iam.PolicyStatement(
                    sid="ReadWhicheverRoleIsSet",
                    actions=["iam:GetRole"],
                    resources=[any_role],
                ),
                iam.PolicyStatement(
                    sid="CreateTheSharedRole",
                    actions=["iam:CreateRole", "iam:TagRole"],
                    resources=[shared_role],
                ),
                iam.PolicyStatement(
                    sid="AttachOnlyTheLoggingPolicy",
                    actions=["iam:AttachRolePolicy"],
                    resources=[shared_role],
                    conditions={"ArnEquals": {"iam:PolicyARN": self.policy_arn}},
                ),
                iam.PolicyStatement(
                    sid="PassItOnlyToApiGateway",
                    actions=["iam:PassRole"],
                    resources=[shared_role],
                    conditions={"StringEquals": {"iam:PassedToService": APIGATEWAY_PRINCIPAL}},
                ),
            ]
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{config.stack_name}: ensures the API Gateway account's CloudWatch Logs role",
            inline_policies={"EnsureApiGatewayLoggingRole": permissions},
        )
        self.function = lambda_.Function(
            self,
            "Handler",
            description=f"{config.stack_name}: sets the API Gateway account's CloudWatch Logs role if unset",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler="handler.on_event",
            code=lambda_.Code.from_asset(str(ASSET_DIR), exclude=["**/__pycache__", "**/*.pyc"]),
            role=self.role,
            memory_size=256,
            # Room for the handler's two-minute IAM propagation budget plus its answer to CloudFormation.
            timeout=Duration.minutes(3),
            log_group=self.log_group,
        )
        function = self.function.node.default_child
        assert isinstance(function, lambda_.CfnFunction)
        # The `Role` GetAtt already orders the role (inline policy included) first (cfn-lint W3005).
        function.add_deletion_override("DependsOn")
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=self.function.function_arn,
            resource_type=RESOURCE_TYPE,
            properties={
                "RoleName": ROLE_NAME,
                "PolicyArn": self.policy_arn,
                "Description": (
                    "API Gateway's CloudWatch Logs role for this account (all regions). Set by rtp where "
                    "none worked; shared by every API, so it outlives the stacks."
                ),
                # The role is shared by every environment: tagged with the project, not an environment.
                "RoleTags": [{"Key": "Project", "Value": config.project}],
            },
            # CloudFormation gives up after 5 minutes instead of the default hour if no answer ever comes.
            service_timeout=Duration.minutes(5),
        )
        self._acknowledge()

    def _acknowledge(self) -> None:
        for finding, reason in {
            f"AwsSolutions-IAM5[Resource::{ref(self.log_group, 'Arn')}:*]": (
                "Lambda creates log streams with generated names inside this provider's own log group."
            ),
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:role/*]": (
                "iam:GetRole only (read): the role currently set in the account may have any name; "
                "reading it is how a working role is recognised and left alone. Every write is on "
                f"{ROLE_NAME} alone."
            ),
        }.items():
            acknowledge(self.role, finding, reason)
        for check_id, reason in {
            "CKV_AWS_116": (
                f"{OWNER}: CloudFormation invokes it asynchronously but the handler answers every request "
                "itself (SUCCESS or FAILED on the pre-signed response URL) before its deadline; a DLQ "
                "message could not be replayed once that URL expires."
            ),
            "CKV_AWS_117": (
                f"{OWNER}: calls only the public API Gateway and IAM APIs under IAM; no private network "
                "resource to reach."
            ),
            "CKV_AWS_115": (
                f"{OWNER}: runs once per stack create or update; a reservation would take capacity from the "
                "account pool (new accounts, quota 10, cannot grant any)."
            ),
        }.items():
            skip_checkov(self.function, check_id, reason)
        for rule_id, reason in {
            "Serverless-LambdaTracing": (
                f"{OWNER}: two or three API calls per deployment, each logged to its own log group; a "
                "trace would add X-Ray permissions on Resource * for nothing."
            ),
            "Serverless-LambdaDLQ": (
                f"{OWNER}: every outcome, failures included, is reported to CloudFormation on the response "
                "URL, which shows it in the stack events; a DLQ would never hold anything actionable."
            ),
        }.items():
            acknowledge(self.function, rule_id, reason)
