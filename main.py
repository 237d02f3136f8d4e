"""The CDK app: `-c env=NAME` (default dev) -> config/NAME.yaml -> exactly one stack, checked by cdk-nag."""

from __future__ import annotations

import sys

from aws_cdk import App

from stack.app import build_app
from stack.config import ConfigError


def main() -> None:
    app = App()
    env_name = app.node.try_get_context("env") or "dev"
    try:
        build_app(app, env_name)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    app.synth()


if __name__ == "__main__":
    main()
