"""Clean teardown of what CDK adds on our behalf.

`auto_delete_objects` adds a CDK-provided Lambda (the custom resource that empties the buckets on
delete). Left alone, Lambda creates its log group `/aws/lambda/<name>` on first run and that group
outlives the stack. Here the stack creates the group, with retention and encryption, and points the
provider at it, so `cdk destroy` deletes it after the last invocation.

The provider's function and role are plain `CfnResource`s, which `Tags.of(stack)` does not reach; they get
the config's tags here, so every taggable resource in the template carries them.
"""

from __future__ import annotations

from aws_cdk import CfnResource, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import IConstruct

from stack.functions import log_retention
from stack.nag import acknowledge, skip_checkov

AUTO_DELETE_PROVIDER_ID = "Custom::S3AutoDeleteObjectsCustomResourceProvider"


def own_cdk_provider(stack: Stack, *, key: kms.IKey, retention_days: int, tags: dict[str, str]) -> None:
    """Give CDK's auto-delete provider a stack-owned log group, the config's tags and a clean DependsOn."""
    provider = stack.node.try_find_child(AUTO_DELETE_PROVIDER_ID)
    if provider is None:
        return
    function = provider.node.find_child("Handler")
    role = provider.node.find_child("Role")
    assert isinstance(function, CfnResource)
    assert isinstance(role, CfnResource)
    tag_list = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
    function.add_property_override("Tags", tag_list)
    role.add_property_override("Tags", tag_list)
    # The `Role` GetAtt already orders the role before the function (cfn-lint W3005).
    function.remove_resource_dependency(role)
    log_group = logs.LogGroup(
        stack,
        "AutoDeleteObjectsLogs",
        retention=log_retention(retention_days),
        encryption_key=key,
        removal_policy=RemovalPolicy.DESTROY,
    )
    # Referencing the group also orders it: created before the function, deleted after it.
    function.add_property_override("LoggingConfig", {"LogGroup": log_group.log_group_name})
    # No AWS managed policy: the provider writes its logs to this group and nowhere else (its S3 access
    # comes from the buckets' own policies).
    role.add_property_deletion_override("ManagedPolicyArns")
    role.add_property_override(
        "Policies",
        [
            {
                "PolicyName": "WriteOwnLogs",
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                            # The group's ARN from CloudFormation ends in ":*": its streams.
                            "Resource": log_group.log_group_arn,
                        }
                    ],
                },
            }
        ],
    )
    _acknowledge_cdk_provider(provider, function)


def _acknowledge_cdk_provider(provider: IConstruct, function: CfnResource) -> None:
    owner = "CDK's bucket auto-delete provider (aws-cdk-lib), not code of this project"
    skip_checkov(
        function,
        "CKV_AWS_116",
        f"{owner}: CloudFormation invokes it (asynchronously, "
        "https://docs.aws.amazon.com/lambda/latest/dg/services-cloudformation.html) and waits for the "
        "provider's own answer on the pre-signed response URL, which reports any failure as a stack event; a "
        "queued event could not be answered once that URL expires.",
    )
    skip_checkov(
        function,
        "CKV_AWS_117",
        f"{owner}: calls only the public S3 API, under IAM, to empty the stack's buckets; no private "
        "network resource to reach.",
    )
    skip_checkov(
        function,
        "CKV_AWS_115",
        f"{owner}: runs a few times per stack deletion; a reservation would take account capacity "
        "from the pipeline's functions for nothing.",
    )
    for rule_id, reason in {
        "AwsSolutions-L1": f"{owner}: its Node.js runtime is chosen by aws-cdk-lib.",
        "Serverless-LambdaTracing": (
            f"{owner}: runs only on stack delete to empty the buckets; nothing to trace."
        ),
        "Serverless-LambdaDLQ": (
            f"{owner}: every outcome reaches CloudFormation through the provider's response URL and shows "
            "in the stack events; a dead-letter queue would hold nothing anyone could act on."
        ),
        "Serverless-LambdaDefaultMemorySize": f"{owner}: memory size set by aws-cdk-lib.",
    }.items():
        acknowledge(provider, rule_id, reason)
