"""Clean teardown of what CDK adds on our behalf.

`auto_delete_objects` adds a CDK-provided Lambda (the custom resource that empties the buckets on
delete). Left alone, Lambda creates its log group `/aws/lambda/<name>` on first run and that group
outlives the stack. Here the stack creates the group, with retention and encryption, and points the
provider at it, so `cdk destroy` deletes it after the last invocation.
"""

from __future__ import annotations

from aws_cdk import CfnResource, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from stack.functions import log_retention
from stack.nag import acknowledge

AUTO_DELETE_PROVIDER_ID = "Custom::S3AutoDeleteObjectsCustomResourceProvider"


def own_cdk_provider_logs(stack: Stack, *, key: kms.IKey, retention_days: int) -> None:
    provider = stack.node.try_find_child(AUTO_DELETE_PROVIDER_ID)
    if provider is None:
        return
    function = provider.node.find_child("Handler")
    assert isinstance(function, CfnResource)
    log_group = logs.LogGroup(
        stack,
        "AutoDeleteObjectsLogs",
        retention=log_retention(retention_days),
        encryption_key=key,
        removal_policy=RemovalPolicy.DESTROY,
    )
    # Referencing the group also orders it: created before the function, deleted after it.
    function.add_property_override("LoggingConfig", {"LogGroup": log_group.log_group_name})
    _acknowledge_cdk_provider(provider)


def _acknowledge_cdk_provider(provider: Construct) -> None:
    owner = "CDK's bucket auto-delete provider (aws-cdk-lib), not code of this project"
    for rule_id, reason in {
        "AwsSolutions-IAM4": f"{owner}: its role uses AWSLambdaBasicExecutionRole and the template offers no hook to replace it.",
        "AwsSolutions-L1": f"{owner}: its Node.js runtime is chosen by aws-cdk-lib.",
        "Serverless-LambdaTracing": f"{owner}: runs only on stack delete to empty the buckets; nothing to trace.",
        "Serverless-LambdaDLQ": f"{owner}: invoked synchronously by CloudFormation, which reports the failure.",
        "Serverless-LambdaDefaultMemorySize": f"{owner}: memory size set by aws-cdk-lib.",
    }.items():
        acknowledge(provider, rule_id, reason)
