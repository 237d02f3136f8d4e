"""Deploy, diff and destroy AWS environments through the pinned CDK CLI (package.json).

The command line is built here, in one place, so it can be tested exactly: `npx --no-install cdk ACTION
STACK -c env=NAME --app 'python3 main.py'` with `--require-approval broadening` for prod (a person must
approve security-broadening IAM / security-group changes) and `never` elsewhere, `--profile` when given,
and `--outputs-file` for deploy. `npx --no-install` runs the version pinned in package-lock.json from
node_modules and never downloads another one. The refusals (unknown environment, no credentials, wrong
account, gate findings) happen before any CDK process starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtp_cli.paths import PROJECT_ROOT
from stack.config import EnvironmentConfig

# The production environments, the one list: a broadening change needs a person (cdk --require-approval),
# no hotswap or watch, destructive commands want the name typed back, invoke asks twice.
PRODUCTION_ENVIRONMENTS = frozenset({"prod"})
# The CDK CLI on `--hotswap` (and `cdk watch`, which hotswaps by default): "This option deliberately
# introduces drift in CloudFormation stacks in order to speed up deployments. For this reason, only use it
# for development purposes. Do not use this option for your production deployments."
# https://docs.aws.amazon.com/cdk/v2/guide/ref-cli-cmd-deploy.html#ref-cli-cmd-deploy-options-hotswap
# https://docs.aws.amazon.com/cdk/v2/guide/ref-cli-cmd-watch.html
HOTSWAP_DOCS = (
    "https://docs.aws.amazon.com/cdk/v2/guide/ref-cli-cmd-deploy.html#ref-cli-cmd-deploy-options-hotswap"
)

Runner = Callable[[list[str], dict[str, str]], int]


class CdkError(RuntimeError):
    """The CDK CLI cannot be run (not installed, wrong version)."""


@dataclass(frozen=True)
class Identity:
    account: str
    arn: str


def pinned_cdk_version() -> str:
    package = json.loads((PROJECT_ROOT / "package.json").read_text(encoding="utf-8"))
    return str(package["devDependencies"]["aws-cdk"])


def check_cdk_installed() -> None:
    installed = PROJECT_ROOT / "node_modules" / "aws-cdk" / "package.json"
    pinned = pinned_cdk_version()
    if not installed.is_file():
        raise CdkError(f"the CDK CLI is not installed: run `make install` (npm ci installs aws-cdk {pinned})")
    version = json.loads(installed.read_text(encoding="utf-8"))["version"]
    if version != pinned:
        raise CdkError(f"node_modules has aws-cdk {version} but package.json pins {pinned}: run `npm ci`")


def is_production(env: str) -> bool:
    return env in PRODUCTION_ENVIRONMENTS


def approval_level(env: str) -> str:
    return "broadening" if is_production(env) else "never"


def outputs_file(env: str) -> Path:
    return PROJECT_ROOT / ".rtp" / f"outputs-{env}.json"


def cdk_command(
    action: str,
    config: EnvironmentConfig,
    profile: str | None = None,
    *,
    fail_on_diff: bool = False,
    hotswap: bool = False,
    logs: bool = True,
) -> list[str]:
    """The exact CDK CLI invocation for `action` (deploy | diff | destroy | watch) of one environment.
    `hotswap` (deploy) and `watch` are refused for production environments (see `check_hotswap`)."""
    if action not in ("deploy", "diff", "destroy", "watch"):
        raise ValueError(f"unsupported cdk action {action!r}")
    if hotswap or action == "watch":
        check_hotswap(config.name)
    command = [
        "npx",
        "--no-install",
        "cdk",
        action,
        config.stack_name,
        "--app",
        "python3 main.py",
        "-c",
        f"env={config.name}",
    ]
    if action == "deploy":
        command += [
            "--require-approval",
            approval_level(config.name),
            "--outputs-file",
            str(outputs_file(config.name)),
            "--progress",
            "events",
        ]
    elif action == "diff":
        if fail_on_diff:
            command.append("--fail")
    elif action == "destroy":
        command.append("--force")  # confirmation is done by `rtp destroy` (env name typed back in prod)
    elif action == "watch":
        # `cdk watch` hotswaps by default; said explicitly so it never falls back to a full deployment
        # (that is `rtp deploy`, with the gate first). Watched files: "watch" in cdk.json.
        command.append("--hotswap")
        if not logs:
            command.append("--no-logs")
    if hotswap and action == "deploy":
        # `--hotswap` (not `--hotswap-fallback`): code-only; changes it cannot hotswap are not deployed.
        command.append("--hotswap")
    if profile:
        command += ["--profile", profile]
    return command


class HotswapRefusedError(CdkError):
    """Hotswap/watch asked for a production environment."""


def check_hotswap(env: str) -> None:
    if is_production(env):
        raise HotswapRefusedError(
            f"refusing to hotswap {env}: a hotswap updates the functions directly, outside CloudFormation, "
            "so the stack drifts from its template (the CDK CLI: never in production, "
            f"{HOTSWAP_DOCS}). Deploy {env} with `rtp deploy --env {env}` (the gate, then CloudFormation)."
        )


def subprocess_runner(command: list[str], env: dict[str, str]) -> int:
    return subprocess.call(command, cwd=PROJECT_ROOT, env={**os.environ, **env})  # noqa: S603


def cdk_environment() -> dict[str, str]:
    return {
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "18,20",
        "CDK_DISABLE_VERSION_CHECK": "1",
        # `python3 main.py` (the CDK app) must run this interpreter: the project virtualenv
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": str(PROJECT_ROOT),
    }


def caller_identity(profile: str | None, region: str | None) -> Identity:
    """STS GetCallerIdentity with the standard chain / profile. Raises TargetError when there is none."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound

    from rtp_cli.target import TargetError

    try:
        session = boto3.Session(profile_name=profile, region_name=region)
        if session.get_credentials() is None:
            raise TargetError(
                "no AWS credentials found: configure the standard AWS credential chain "
                "(AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, SSO login) or pass --profile"
            )
        identity: dict[str, Any] = session.client(
            "sts", region_name=region or "us-east-1"
        ).get_caller_identity()
    except ProfileNotFound as error:
        raise TargetError(f"AWS profile {profile!r} not found") from error
    except NoCredentialsError as error:
        raise TargetError(
            "no AWS credentials found: configure the standard chain or pass --profile"
        ) from error
    except (ClientError, BotoCoreError) as error:
        raise TargetError(f"the AWS credentials do not work: {error}") from error
    return Identity(account=str(identity["Account"]), arn=str(identity["Arn"]))


def check_account(config: EnvironmentConfig, identity: Identity) -> None:
    from rtp_cli.target import TargetError

    if config.account and config.account != identity.account:
        raise TargetError(
            f"config/{config.name}.yaml pins account {config.account}, but the credentials are for "
            f"{identity.account} ({identity.arn}); use the right --profile"
        )


# ---- bootstrap facts for `rtp doctor` -------------------------------------------------------------------
BOOTSTRAP_QUALIFIER_CONTEXT = "@aws-cdk/core:bootstrapQualifier"
CLI_BOOTSTRAP_TEMPLATE = Path("aws-cdk") / "lib" / "api" / "bootstrap" / "bootstrap-template.yaml"


def bootstrap_qualifier(cdk_json: Path = PROJECT_ROOT / "cdk.json") -> str | None:
    """The bootstrap qualifier `cdk deploy` uses when cdk.json sets one (None: the default)."""
    try:
        context = json.loads(cdk_json.read_text(encoding="utf-8")).get("context", {})
    except (OSError, ValueError):
        return None
    value = context.get(BOOTSTRAP_QUALIFIER_CONTEXT)
    return str(value) if value else None


def cli_bootstrap_template_version(node_modules: Path = PROJECT_ROOT / "node_modules") -> int | None:
    """The bootstrap version the pinned CDK CLI's `cdk bootstrap` would deploy (None: not installed)."""
    from rtp_cli.doctor import template_version

    path = node_modules / CLI_BOOTSTRAP_TEMPLATE
    try:
        return template_version(path.read_text(encoding="utf-8"))
    except OSError:
        return None
