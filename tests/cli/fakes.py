"""Stand-ins the CLI tests share (their fixtures: tests/cli/conftest.py)."""

from __future__ import annotations


class FakeCdk:
    """Takes the place of `rtp_cli.app.run_cdk`: records every CDK command line, exits with `code`."""

    def __init__(self, code: int = 0) -> None:
        self.code = code
        self.calls: list[list[str]] = []

    def __call__(self, command: list[str], env: dict[str, str]) -> int:
        self.calls.append(command)
        assert env["JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION"] == "1"  # the CLI quiets jsii for the user
        return self.code
