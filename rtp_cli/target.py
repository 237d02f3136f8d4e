"""Where an environment lives: its API endpoint, region, stack outputs and an AWS session to reach it.

Every command that talks to a deployed (or locally running) environment starts here, so endpoints and
resource names are always discovered, never typed by hand:

- `local`: read from `.rtp/local.json`, written by `rtp deploy --env local` (moto endpoint, local
  credentials, the outputs with the same keys as the stack's CfnOutputs).
- any other environment: CloudFormation `DescribeStacks` outputs of `config.stack_name`, with the
  standard AWS credential chain or `--profile`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound

from rtp_cli.paths import PROJECT_ROOT
from stack.config import ConfigError, load_config

LOCAL_ENV = "local"
STATE_DIR_ENV = "RTP_STATE_DIR"  # overrides where `.rtp/` lives (tests run several local instances)


class TargetError(RuntimeError):
    """The environment cannot be reached: not deployed, not running, no credentials. Exit code 2."""


def state_dir() -> Path:
    override = os.environ.get(STATE_DIR_ENV)
    return Path(override) if override else PROJECT_ROOT / ".rtp"


def local_state_path() -> Path:
    return state_dir() / "local.json"


@dataclass
class Target:
    env: str
    api_url: str
    region: str
    outputs: dict[str, str]
    session: boto3.Session
    endpoint_url: str | None = None
    stack_name: str = ""
    stack_status: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.env == LOCAL_ENV

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for this environment (pointed at the local emulation for `local`)."""
        config = kwargs.pop("config", BotoConfig(retries={"mode": "standard", "max_attempts": 5}))
        make_client: Any = self.session.client  # service is dynamic: skip the per-service stub overloads
        return make_client(
            service, region_name=self.region, endpoint_url=self.endpoint_url, config=config, **kwargs
        )

    def credentials(self) -> ReadOnlyCredentials:
        """Frozen credentials for SigV4 signing of API requests (botocore.auth.SigV4Auth)."""
        creds = self.session.get_credentials()
        if creds is None:
            raise TargetError(
                f"no AWS credentials for environment {self.env!r}: configure the standard AWS credential "
                "chain (AWS_PROFILE, environment variables, SSO) or pass --profile"
            )
        frozen: ReadOnlyCredentials = creds.get_frozen_credentials()
        return frozen

    def output(self, key: str) -> str:
        try:
            return self.outputs[key]
        except KeyError:
            raise TargetError(
                f"environment {self.env!r} has no output {key!r} (outputs: {', '.join(sorted(self.outputs))})"
            ) from None


def read_local_state(path: Path | None = None) -> dict[str, Any]:
    path = path or local_state_path()
    if not path.is_file():
        raise TargetError(
            f"the local environment is not running ({path} not found): start it with `rtp deploy --env local`"
        )
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise TargetError(f"{path} is not valid JSON ({error}); run `rtp destroy --env local`") from error
    return state


def local_target(path: Path | None = None, *, check_alive: bool = True) -> Target:
    state = read_local_state(path)
    if check_alive:
        from rtp_cli.local.process import pid_alive  # local import: keeps `rtp --help` fast

        pid = state.get("pid")
        if isinstance(pid, int) and not pid_alive(pid):
            raise TargetError(
                f"the local environment recorded in {path or local_state_path()} (pid {pid}) is no longer "
                "running: start it again with `rtp deploy --env local`"
            )
    session = boto3.Session(
        aws_access_key_id=state["access_key_id"],
        aws_secret_access_key=state["secret_access_key"],
        region_name=state["region"],
    )
    return Target(
        env=LOCAL_ENV,
        api_url=state["url"],
        region=state["region"],
        outputs={str(k): str(v) for k, v in state.get("outputs", {}).items()},
        session=session,
        endpoint_url=state["aws_endpoint_url"],
        stack_name=state.get("stack_name", ""),
        stack_status="RUNNING (local)",
        extra=state,
    )


def aws_session(profile: str | None, region: str | None) -> boto3.Session:
    try:
        return boto3.Session(profile_name=profile, region_name=region)
    except ProfileNotFound as error:
        raise TargetError(f"AWS profile {profile!r} not found in your AWS config") from error


def resolve_target(env: str, profile: str | None = None) -> Target:
    """Find environment `env`. Raises ConfigError (unknown env) or TargetError (not deployed/running)."""
    if env == LOCAL_ENV:
        return local_target()
    config = load_config(env)
    session = aws_session(profile, config.region)
    region = config.region or session.region_name
    if not region:
        raise TargetError(
            f"no AWS region for environment {env!r}: set `region` in config/{env}.yaml, AWS_REGION, "
            "or a region in your AWS profile"
        )
    if session.get_credentials() is None:
        raise TargetError(
            "no AWS credentials found: configure the standard AWS credential chain "
            "(AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, SSO) or pass --profile"
        )
    cfn = session.client("cloudformation", region_name=region)
    try:
        stacks = cfn.describe_stacks(StackName=config.stack_name)["Stacks"]
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", str(error))
        if "does not exist" in message:
            raise TargetError(
                f"stack {config.stack_name} is not deployed in {region}: run `rtp deploy --env {env}`"
            ) from error
        raise TargetError(f"cannot read stack {config.stack_name}: {message}") from error
    except (NoCredentialsError, BotoCoreError) as error:
        raise TargetError(f"cannot reach AWS for environment {env!r}: {error}") from error
    stack = stacks[0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    if "ApiUrl" not in outputs:
        raise TargetError(
            f"stack {config.stack_name} ({stack.get('StackStatus')}) has no ApiUrl output yet: "
            f"is a deployment in progress? Run `rtp status --env {env}`"
        )
    return Target(
        env=env,
        api_url=outputs["ApiUrl"],
        region=region,
        outputs=outputs,
        session=session,
        endpoint_url=None,
        stack_name=config.stack_name,
        stack_status=str(stack.get("StackStatus", "")),
    )


__all__ = [
    "LOCAL_ENV",
    "ConfigError",
    "Target",
    "TargetError",
    "local_state_path",
    "local_target",
    "read_local_state",
    "resolve_target",
    "state_dir",
]
