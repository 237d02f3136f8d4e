"""Build the app's one stack for an environment, with the cdk-nag packs attached (shared by main.py,
the `rtp` CLI and the tests)."""

from __future__ import annotations

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks, ServerlessChecks

from stack.config import EnvironmentConfig, load_config
from stack.pipeline_stack import PipelineStack

# Set here rather than only in cdk.json so that tests and the CLI, which build the App themselves,
# synthesize exactly what `cdk synth` does.
FEATURE_FLAGS = {
    # Server access logs delivered through a bucket policy, not the legacy LogDeliveryWrite ACL.
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
}


def build_app(app: App, env_name: str, config: EnvironmentConfig | None = None) -> PipelineStack:
    config = config or load_config(env_name)
    for flag, value in FEATURE_FLAGS.items():
        if app.node.try_get_context(flag) is None:
            app.node.set_context(flag, value)
    env = Environment(account=config.account, region=config.region) if config.account else None
    stack = PipelineStack(app, config, env=env)
    Validations.of(app).add_plugins(
        AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True), ServerlessChecks(app)
    )
    return stack
