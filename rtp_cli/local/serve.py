"""Serve the local environment in this process until SIGINT/SIGTERM (the detached `rtp deploy --env local`
runs this module in the background; the foreground command calls `serve()` directly)."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rtp_cli.local.runtime import LocalEnvironment, LocalOptions, describe_error, remove_state, write_state


def serve(
    options: LocalOptions,
    state_path: Path,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    env = LocalEnvironment(options)

    def _stop(signum: int, frame: Any) -> None:
        env.request_stop()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            state = env.start()
        except Exception as error:
            print(f"error: {describe_error(error)}", file=sys.stderr, flush=True)
            return 1
        write_state(state_path, state)
        if on_ready is not None:
            on_ready(state)
        env.wait()
        return 0
    finally:
        env.stop()
        remove_state(state_path, pid=env.state.get("pid"))
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtp_cli.local.serve")
    parser.add_argument("--template", required=True, type=Path)
    parser.add_argument("--stack-name", required=True)
    parser.add_argument("--env-name", default="local")
    parser.add_argument("--region", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--aws-port", type=int, default=0)
    parser.add_argument("--transform")
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--echo-logs", action="store_true")
    args = parser.parse_args(argv)
    options = LocalOptions(
        template_path=args.template,
        stack_name=args.stack_name,
        env_name=args.env_name,
        region=args.region,
        host=args.host,
        port=args.port,
        aws_port=args.aws_port,
        transform=args.transform,
        echo_logs=sys.stdout if args.echo_logs else None,
    )
    return serve(options, args.state)


if __name__ == "__main__":
    raise SystemExit(main())
