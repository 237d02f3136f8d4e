"""`rtp`: one command line for every environment of the pipeline, including the embedded `local` one.

Commands are thin: they parse options, call a service (rtp_cli.gate, .cdk, .status, .local.control),
and render the result with rich (plain text when the output is not a terminal). Exit codes:
0 success; 1 the command ran and found something wrong (gate findings, a failed deploy, an unhealthy
status with --strict); 2 a usage or environment error (unknown environment, bad config, no
credentials, the environment is not deployed or not running, a refused confirmation).
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from collections import Counter
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from rtp_cli.console import console, err, escape, print_error
from rtp_cli.errors import CliError
from rtp_cli.errors import fail as _fail  # the one error helper, under the name this module's commands use
from rtp_cli.options import EnvOption, ProfileOption
from rtp_cli.paths import PROJECT_ROOT
from rtp_cli.reconcile import reconcile_command
from rtp_cli.records import records as records_command
from rtp_cli.replay import replay as replay_command
from rtp_cli.trace import trace as trace_command

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
# jsii prints a multi-line banner for an end-of-life Node major on every synth; the Node version is the
# machine's choice, not something `rtp` output should repeat on each command.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")


class _Rtp(TyperGroup):
    """The `rtp` command group: a `CliError` from any command ends it as `error: <message>` on stderr with
    the error's exit code (no traceback). Commands raise it through `rtp_cli.errors.fail`."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (typer vendors its own click)
        try:
            return super().invoke(ctx)
        except CliError as error:
            # A Text, not markup: the message is shown as written (paths, user input, brackets, colons).
            err.print(Text.assemble(("error:", "bold red"), f" {error.message}"), highlight=False)
            raise typer.Exit(error.exit_code) from None


app = typer.Typer(
    cls=_Rtp,
    name="rtp",
    help="Real-time pipeline platform: synth, check, doctor, deploy, diff, destroy, status and alarm test "
    "for every environment in config/, including the embedded `local` one (no AWS account, no Docker).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def package_version() -> str:
    """The installed distribution's version; from a checkout that was never installed, pyproject.toml's."""
    try:
        return metadata.version("rtp")
    except metadata.PackageNotFoundError:
        try:
            pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
            return f"{pyproject['project']['version']} (not installed)"
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown (not installed)"


def _show_version(value: bool) -> None:
    if value:
        console.print(f"rtp {package_version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show rtp's version and exit."),
    ] = False,
) -> None:
    pass


# Services, as attributes so tests can inject fakes (a CDK runner, an STS identity, the gate).
from rtp_cli import cdk as cdk_service  # noqa: E402

run_cdk: cdk_service.Runner = cdk_service.subprocess_runner
get_identity = cdk_service.caller_identity


def _aws_identity(config: Any, profile: str | None) -> cdk_service.Identity:
    """Refuse early, with a clear message, when the CDK CLI, the credentials or the account are wrong."""
    from rtp_cli.target import TargetError

    try:
        cdk_service.check_cdk_installed()
        identity = get_identity(profile, config.region)
        cdk_service.check_account(config, identity)
    except (TargetError, cdk_service.CdkError) as error:
        _fail(str(error))
    return identity


def interactive() -> bool:
    """Can we ask a person? (Never prompt a CI job: it would hang or read garbage.)"""
    return sys.stdin.isatty()


def _config(env: str) -> Any:
    from stack.config import ConfigError, load_config

    try:
        return load_config(env)
    except ConfigError as error:
        _fail(str(error))


def _spinner(message: str) -> Any:
    import contextlib

    return err.status(message) if err.is_terminal else contextlib.nullcontext()


# ---- synth --------------------------------------------------------------------------------------------
@app.command()
def synth(
    env: EnvOption = "dev",
    outdir: Annotated[Path, typer.Option(help="Cloud assembly directory.")] = Path("cdk.out"),
) -> None:
    """Synthesize the environment's one stack with the cdk-nag packs; non-zero on any finding."""
    _config(env)
    from stack.synth import synthesize

    with _spinner(f"synthesizing {env}…"):
        result = synthesize(env, outdir)
    template = result.template
    counts = Counter(r["Type"] for r in template.get("Resources", {}).values())
    console.print(
        f"[bold]{result.config.stack_name}[/bold]: {sum(counts.values())} resources, "
        f"{len(template.get('Outputs', {}))} outputs -> {result.template_path}"
    )
    if result.findings:
        _findings_table(
            [(f.pack, f.rule, f.path, f.description) for f in result.findings],
            ("pack", "rule", "resource", "finding"),
            f"cdk-nag: {len(result.findings)} unacknowledged finding(s)",
        )
        raise typer.Exit(1)
    console.print("[green]cdk-nag: 0 unacknowledged findings[/green] (AwsSolutions, Serverless)")


def _findings_table(rows: Sequence[tuple[str, ...]], columns: tuple[str, ...], title: str) -> None:
    table = Table(title=title, title_style="bold red", show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)


# ---- check --------------------------------------------------------------------------------------------
@app.command()
def check(
    env: EnvOption = "all",
    report: Annotated[
        tuple[str, Path] | None,
        typer.Option(
            metavar="FORMAT FILE", help="Also write a report for CI: junit|sarif|json and a file path."
        ),
    ] = None,
    outdir: Annotated[Path | None, typer.Option(help="Keep the synthesized templates here.")] = None,
) -> None:
    """The CI compliance gate: synth + cdk-nag + cfn-lint (+ checkov when installed); non-zero on any finding.

    `--env all` checks every file in config/."""
    from rtp_cli import gate
    from stack.config import available_environments

    if report is not None and report[0] not in ("junit", "sarif", "json"):
        _fail(f"--report format must be junit, sarif or json (got {report[0]!r})")
    environments = available_environments() if env == "all" else [env]
    for name in environments:
        _config(name)
    with _spinner("running the gate…") as status:

        def progress(message: str) -> None:
            if status is not None:
                status.update(f"gate: {message}")
            else:
                err.print(f"gate: {escape(message)}", highlight=False)

        result = gate.run_gate(environments, outdir=outdir, progress=progress)
    table = Table(title=f"rtp check: {', '.join(environments)}")
    for column in ("environment", "tool", "result", "detail"):
        table.add_column(column)
    styles = {"passed": "green", "failed": "bold red", "skipped": "yellow", "error": "bold red"}
    for run in result.runs:
        table.add_row(run.env, run.tool, f"[{styles[run.status]}]{run.status}[/]", escape(run.detail))
    console.print(table)
    if result.findings:
        _findings_table(
            [(f.env, f.tool, f.rule, f.resource, f.message) for f in result.findings],
            ("env", "tool", "rule", "resource", "finding"),
            f"{len(result.findings)} finding(s)",
        )
    if report is not None:
        gate.write_report(result, report[0], report[1])
        console.print(f"{report[0]} report -> {report[1]}")
    if not result.ok:
        err.print("[bold red]gate failed[/bold red]")
        raise typer.Exit(1)
    console.print("[bold green]gate passed[/bold green]")


# ---- deploy -------------------------------------------------------------------------------------------
@app.command()
def deploy(
    env: EnvOption = "local",
    profile: ProfileOption = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="local: run in the background.")] = False,
    port: Annotated[int, typer.Option(help="local: API port on 127.0.0.1 (0 = any free port).")] = 8765,
    aws_port: Annotated[int, typer.Option(help="local: port of the AWS emulation (0 = any free port).")] = 0,
    transform: Annotated[
        str | None,
        typer.Option(
            envvar="RTP_LOCAL_TRANSFORM", help="local: use module:function as the processor's transform."
        ),
    ] = None,
    template: Annotated[
        Path | None, typer.Option(help="local: serve this synthesized template (from its cloud assembly).")
    ] = None,
    logs: Annotated[bool, typer.Option(help="local, foreground: print function logs as they happen.")] = True,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="local: synthesize even if nothing changed.")
    ] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="local, foreground: run saved changes to handlers/ and the --transform module within a "
            "second, without a restart; re-synthesize on stack/ or config/ changes.",
        ),
    ] = False,
    hotswap: Annotated[
        bool,
        typer.Option(
            "--hotswap",
            help="AWS, not prod: code-only `cdk deploy --hotswap` (seconds, skips CloudFormation; drift).",
        ),
    ] = False,
    skip_doctor: Annotated[
        bool, typer.Option("--skip-doctor", help="AWS: do not run `rtp doctor` first (not recommended).")
    ] = False,
) -> None:
    """Deploy an environment. AWS: `rtp doctor` (a FAIL stops here), the gate, then the pinned CDK CLI,
    then the stack outputs.
    `local`: serve the same template on 127.0.0.1 with an embedded AWS emulation (Ctrl-C stops it)."""
    if env == "local":
        if hotswap:
            _fail("--hotswap is for AWS environments; locally use --watch (new code runs within a second)")
        _deploy_local(detach, port, aws_port, transform, template, logs, no_cache, watch)
        return
    if watch:
        _fail(f"--watch serves the local environment; for {env} use `rtp watch --env {env}` (cdk watch)")
    if hotswap:
        _deploy_hotswap(env, profile)
        return
    config = _config(env)
    identity = _aws_identity(config, profile)
    console.print(
        f"deploying [bold]{config.stack_name}[/bold] to account {identity.account} as {identity.arn}"
    )
    if skip_doctor:
        err.print("[yellow]doctor skipped (--skip-doctor): the account was not checked[/yellow]")
    else:
        _doctor_or_exit(config, identity, profile)
    _gate_or_exit(env)
    command = cdk_service.cdk_command("deploy", config, profile)
    console.print(f"[dim]$ {' '.join(command)}[/dim]")
    code = run_cdk(command, cdk_service.cdk_environment())
    if code != 0:
        _fail(f"cdk deploy failed (exit {code})", 1)
    outputs_path = cdk_service.outputs_file(env)
    if outputs_path.is_file():
        outputs = json.loads(outputs_path.read_text(encoding="utf-8")).get(config.stack_name, {})
        _kv_table(f"{config.stack_name} outputs", outputs)


def _gate_or_exit(env: str) -> None:
    from rtp_cli import gate

    with _spinner(f"gate: synth + cdk-nag + cfn-lint + checkov for {env}…"):
        result = gate.run_gate([env])
    if not result.ok:
        _findings_table(
            [(f.tool, f.rule, f.resource, f.message) for f in result.findings]
            + [(r.tool, "-", "-", r.detail) for r in result.runs if r.status == "error"],
            ("tool", "rule", "resource", "finding"),
            "the gate failed: nothing was deployed",
        )
        raise typer.Exit(1)
    skipped = [r.tool for r in result.runs if r.status == "skipped"]
    note = f" ({', '.join(skipped)} skipped: not installed)" if skipped else ""
    console.print(f"[green]gate passed[/green]{note}")


def _kv_table(title: str, values: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in values.items():
        table.add_row(str(key), str(value))
    console.print(table)


def _deploy_local(
    detach: bool,
    port: int,
    aws_port: int,
    transform: str | None,
    template: Path | None,
    logs: bool,
    no_cache: bool,
    watch: bool = False,
) -> None:
    from rtp_cli.local import control
    from rtp_cli.local.template import TemplateError

    _config("local")
    if watch and detach:
        _fail(
            "--watch runs in the foreground (it prints what it reloads): drop --detach, use another terminal"
        )
    if template is not None and not template.is_file():
        _fail(f"--template {template}: no such file")
    if transform:
        with _spinner(f"checking --transform {transform}…"):
            problem = control.check_transform(transform)
        if problem:
            _fail(problem)
    try:
        with _spinner("synthesizing the local environment…"):
            prepared = control.prepare("local", template, use_cache=not no_cache)
    except TemplateError as error:
        _fail(str(error), 1)
    if prepared.findings:
        _findings_table(
            [(f.pack, f.rule, f.path, f.description) for f in prepared.findings],
            ("pack", "rule", "resource", "finding"),
            "cdk-nag findings: the local environment serves only a template that passes the gate",
        )
        raise typer.Exit(1)
    busy = control.busy_port_problem(port, aws_port, control.running_state())
    if busy:
        _fail(busy)
    previous = control.stop_local()
    if previous and previous.get("pid"):
        err.print(f"replaced the running local environment (pid {previous['pid']}); local data starts empty")
    if detach:
        try:
            with _spinner("starting the local environment…"):
                state = control.start_detached(prepared, port, aws_port, transform)
        except (control.LocalStartError, TemplateError) as error:
            _fail(str(error), 1)
        _print_local(state, detached=True)
        return

    def ready(state: dict[str, Any]) -> None:
        _print_local(state, detached=False)

    try:
        if watch:
            code = _serve_watching(prepared, port, aws_port, transform, logs, ready, template is None)
        else:
            code = control.start_foreground(
                prepared, port, aws_port, transform, sys.stdout if logs else None, ready
            )
    except OSError as error:
        _fail(f"cannot serve on 127.0.0.1:{port}: {error} (choose another --port, or 0 for any free port)", 1)
    if code != 0:
        raise typer.Exit(1)
    console.print("local environment stopped; nothing left running")


def _serve_watching(
    prepared: Any,
    port: int,
    aws_port: int,
    transform: str | None,
    logs: bool,
    ready: Any,
    watch_stack: bool,
) -> int:
    from rtp_cli import watch as watch_service

    def report(event: watch_service.WatchEvent) -> None:
        for line in watch_service.render(event):
            console.print(line, highlight=False, soft_wrap=True)

    return watch_service.serve_watching(
        prepared,
        port,
        aws_port,
        transform,
        sys.stdout if logs else None,
        ready,
        report,
        watch_stack=watch_stack,
    )


def _deploy_hotswap(env: str, profile: str | None) -> None:
    """`cdk deploy --hotswap`: code-only, seconds; refused for production (drift). No gate: a hotswap
    deploys only what it can update directly (function code and configuration), never IAM or resources."""
    try:
        cdk_service.check_hotswap(env)
    except cdk_service.HotswapRefusedError as error:
        _fail(str(error))
    config = _config(env)
    identity = _aws_identity(config, profile)
    console.print(
        f"hotswapping [bold]{config.stack_name}[/bold] in account {identity.account} as {identity.arn} "
        "(code only; `rtp deploy` without --hotswap runs the gate and CloudFormation)"
    )
    command = cdk_service.cdk_command("deploy", config, profile, hotswap=True)
    console.print(f"[dim]$ {' '.join(command)}[/dim]")
    code = run_cdk(command, cdk_service.cdk_environment())
    if code != 0:
        _fail(f"cdk deploy --hotswap failed (exit {code})", 1)


def _print_local(state: dict[str, Any], detached: bool) -> None:
    from rtp_cli.local.control import curl_example

    lines = [
        f"[bold]endpoint[/bold]     {state['url']}",
        f"[bold]region[/bold]       {state['region']}",
        f"[bold]access key[/bold]   {state['access_key_id']}",
        f"[bold]secret key[/bold]   {state['secret_access_key']}",
        f"[bold]AWS emulation[/bold] {state['aws_endpoint_url']}  (moto; AWS_ENDPOINT_URL for boto3/aws cli)",
        f"[bold]started in[/bold]   {state.get('startup_seconds', '?')} s (pid {state['pid']})",
    ]
    if state.get("transform"):
        lines.append(f"[bold]transform[/bold]    {state['transform']}")
    console.print(
        Panel("\n".join(lines), title=f"rtp local: {state['stack_name']} is serving", border_style="green")
    )
    console.print("Send a record (SigV4-signed, as in AWS):")
    console.print(curl_example(state), highlight=False, soft_wrap=True)
    aws_only = state.get("aws_only", [])
    if aws_only:
        summary = ", ".join(f"{entry['type'].removeprefix('AWS::')} x{entry['count']}" for entry in aws_only)
        console.print(f"[dim]AWS-only, not emulated locally: {summary}[/dim]")
    from rtp_cli.target import local_state_path

    stop_hint = "stop it with `rtp destroy --env local`" if detached else "Ctrl-C stops it"
    console.print(f"Other commands find it through {local_state_path()}; {stop_hint}.")
    if state.get("watch"):
        console.print(f"[green]watch:[/green] {state['watch']}; a save runs within a second", highlight=False)


# ---- diff ---------------------------------------------------------------------------------------------
@app.command()
def diff(
    env: EnvOption = "dev",
    profile: ProfileOption = None,
    fail: Annotated[bool, typer.Option("--fail", help="Exit 1 when there are differences (for CI).")] = False,
) -> None:
    """Show what `rtp deploy` would change in an AWS environment (pinned CDK CLI `cdk diff`)."""
    if env == "local":
        _fail("`local` is always served from the current template: `rtp deploy --env local` restarts it")
    config = _config(env)
    from rtp_cli.target import TargetError

    try:
        cdk_service.check_cdk_installed()
        get_identity(profile, config.region)
    except (TargetError, cdk_service.CdkError) as error:
        _fail(str(error))
    command = cdk_service.cdk_command("diff", config, profile, fail_on_diff=fail)
    console.print(f"[dim]$ {' '.join(command)}[/dim]")
    code = run_cdk(command, cdk_service.cdk_environment())
    if code != 0:
        raise typer.Exit(1)


# ---- destroy ------------------------------------------------------------------------------------------
@app.command()
def destroy(
    env: EnvOption = "local",
    profile: ProfileOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (automation).")] = False,
) -> None:
    """Delete an environment's stack and everything in it (prod asks for its name typed back).
    `local`: stop the embedded environment; nothing is left running."""
    if env == "local":
        from rtp_cli.local.control import stop_local

        state = stop_local()
        if state is None:
            console.print("the local environment is not running; nothing to stop")
        else:
            console.print(f"stopped the local environment (pid {state.get('pid')}); nothing left running")
        return
    config = _config(env)
    identity = _aws_identity(config, profile)
    if not yes:
        if not interactive():
            _fail(f"refusing to destroy {config.stack_name} without confirmation: pass --yes for automation")
        if cdk_service.is_production(env):
            typed = typer.prompt(
                f"This deletes {config.stack_name} in account {identity.account} and ALL its data. "
                f"Type the environment name ({env}) to confirm"
            )
            if typed.strip() != env:
                _fail("the name did not match; nothing was destroyed")
        elif not typer.confirm(f"Delete {config.stack_name} in account {identity.account} and all its data?"):
            _fail("cancelled; nothing was destroyed")
    command = cdk_service.cdk_command("destroy", config, profile)
    console.print(f"[dim]$ {' '.join(command)}[/dim]")
    code = run_cdk(command, cdk_service.cdk_environment())
    if code != 0:
        _fail(f"cdk destroy failed (exit {code})", 1)
    console.print(f"[green]{config.stack_name} destroyed[/green]")


# ---- status -------------------------------------------------------------------------------------------
@app.command()
def status(
    identifier: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="A record or batch id: show that one instead.")
    ] = None,
    env: EnvOption = "local",
    profile: ProfileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    strict: Annotated[
        bool, typer.Option(help="Exit 1 when an alarm fires or the DLQ holds messages.")
    ] = False,
) -> None:
    """The first screen in an incident: stack state and outputs, alarms in ALARM, queue and DLQ depth
    and the age of their oldest message. With an ID: that record or batch."""
    if identifier is not None:
        if register_operate_commands is None:
            _fail("`rtp status ID` needs the operating commands (rtp_cli.operate), which are not installed")
        from rtp_cli.operate.commands import show_id

        show_id(identifier, env, profile)
        return
    from rtp_cli.status import collect_status
    from rtp_cli.target import TargetError, resolve_target
    from stack.config import ConfigError

    try:
        target = resolve_target(env, profile)
    except (ConfigError, TargetError) as error:
        _fail(str(error))
    report = collect_status(target)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        _render_status(report)
    if strict and not report.healthy:
        raise typer.Exit(1)


def _render_status(report: Any) -> None:
    console.print(
        f"[bold]{report.stack_name}[/bold] ({report.env}): "
        f"[bold]{report.stack_status}[/bold]  {report.api_url}"
    )
    if report.alarms is None:
        console.print(f"[yellow]alarms:[/yellow] {report.alarms_note}")
    elif report.alarms:
        table = Table(title=f"{len(report.alarms)} alarm(s) in ALARM", title_style="bold red")
        for column in ("alarm", "since", "reason"):
            table.add_column(column, overflow="fold")
        for alarm in report.alarms:
            table.add_row(alarm["name"], alarm["since"], alarm["reason"])
        console.print(table)
    else:
        console.print("[green]alarms: none in ALARM[/green]")
    for warning in getattr(report, "warnings", []):
        console.print(
            f"[bold yellow]warning:[/bold yellow] {warning.detail}\n  [bold]fix:[/bold] {warning.fix}"
        )
    table = Table(title="queues")
    for column in ("queue", "visible", "in flight", "delayed", "oldest message"):
        table.add_column(column)
    for queue in report.queues:
        age = "-" if queue.oldest_age_seconds is None else f"{queue.oldest_age_seconds:.0f} s"
        visible = "?" if queue.visible is None else str(queue.visible)
        style = "bold red" if queue.label == "dead-letter queue" and queue.visible else ""
        table.add_row(
            queue.label,
            f"[{style}]{visible}[/]" if style else visible,
            str(queue.in_flight if queue.in_flight is not None else "?"),
            str(queue.delayed if queue.delayed is not None else "?"),
            age if not queue.error else f"[red]{queue.error}[/red]",
        )
    console.print(table)
    _kv_table("outputs", report.outputs)


# ---- watch (AWS: cdk watch) ---------------------------------------------------------------------------
@app.command("watch")
def watch_command(
    env: EnvOption = "dev",
    profile: ProfileOption = None,
    logs: Annotated[bool, typer.Option(help="Show the stack's CloudWatch logs (cdk watch --logs).")] = True,
) -> None:
    """Hotswap code changes to a non-production AWS environment as you save (the pinned CDK CLI's
    `cdk watch`; watched files: "watch" in cdk.json). Refused for prod (drift). Ctrl-C stops it."""
    if env == "local":
        _fail(
            "for the local environment use `rtp deploy --env local --watch` (new code runs within a second)"
        )
    try:
        cdk_service.check_hotswap(env)
    except cdk_service.HotswapRefusedError as error:
        _fail(str(error))
    config = _config(env)
    _aws_identity(config, profile)
    command = cdk_service.cdk_command("watch", config, profile, logs=logs)
    console.print(f"[dim]$ {' '.join(command)}[/dim]")
    code = run_cdk(command, cdk_service.cdk_environment())
    if code not in (0, 130):  # 130: stopped with Ctrl-C
        _fail(f"cdk watch exited with code {code}", 1)


# ---- invoke -------------------------------------------------------------------------------------------
@app.command()
def invoke(
    function: Annotated[str, typer.Argument(metavar="FUNCTION", help="ingest, processor or query.")],
    env: EnvOption = "local",
    profile: ProfileOption = None,
    event: Annotated[
        str | None, typer.Option("--event", metavar="FILE|-", help="The event: a JSON file, or - for stdin.")
    ] = None,
    generate: Annotated[
        str | None,
        typer.Option(
            "--generate",
            metavar="api|sqs",
            help="Build a realistic event from the template: api (API Gateway proxy) or sqs (a claim check "
            "pointing at a real raw object).",
        ),
    ] = None,
    route: Annotated[
        str | None, typer.Option(help='--generate api: which route, e.g. "GET /batches/{batchId}".')
    ] = None,
    print_event: Annotated[
        bool,
        typer.Option("--print", help="Print the generated event (to edit and pass to --event); no call."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    yes_prod: Annotated[
        bool,
        typer.Option("--yes-prod", help="Allow invoking a production function (then type its env name)."),
    ] = False,
) -> None:
    """Invoke one function with one event; print its response, log lines and duration.
    Locally through the running environment's own workers; in AWS `lambda:Invoke` with the log tail."""
    from rtp_cli import invoke as invoke_service
    from rtp_cli.target import TargetError, resolve_target
    from stack.config import ConfigError

    try:
        invoke_service.check_function(function)
    except invoke_service.InvokeError as error:
        _fail(str(error))
    if (event is None) == (generate is None):
        _fail("give the event with --event FILE|- or --generate api|sqs (one of them)")
    if print_event and generate is None:
        _fail("--print shows a generated event: use it with --generate")
    if cdk_service.is_production(env) and not print_event:
        if not yes_prod:
            _fail(
                f"refusing to invoke a {env} function: it acts on production data. "
                f"Pass --yes-prod, then type {env!r}"
            )
        if not interactive():
            _fail(f"invoking a {env} function needs a person to type {env!r}: refusing without a terminal")
        if (
            typer.prompt(
                f"This invokes the {function} function in {env}. Type the environment name ({env})"
            ).strip()
            != env
        ):
            _fail("the name did not match; nothing was invoked")
    try:
        target = resolve_target(env, profile)
        if generate is not None:
            with _spinner(f"generating a {generate} event for {function}…"):
                generated = invoke_service.generate(target, function, generate, route)
            if print_event:
                print(json.dumps(generated.event, indent=2))
                return
            for note in generated.notes:
                err.print(f"[dim]{note}[/dim]", highlight=False)
            payload = generated.event
        else:
            assert event is not None
            payload = invoke_service.read_event(event)
        with _spinner(f"invoking {function} ({env})…"):
            result = invoke_service.invoke(target, function, payload)
    except invoke_service.InvokeError as error:
        _fail(str(error))
    except (ConfigError, TargetError) as error:
        _fail(str(error))
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        _render_invocation(result)
    if not result.ok:
        raise typer.Exit(1)


def _render_invocation(result: Any) -> None:
    import contextlib

    from rich.markup import escape

    status = (
        "[green]ok[/green]" if result.ok else f"[bold red]{escape(result.error_type or 'error')}[/bold red]"
    )
    start = f"cold start, init {result.init_ms:.0f} ms" if result.init_ms is not None else "warm"
    duration = f"{result.duration_ms:.1f} ms" if result.duration_ms is not None else "?"
    console.print(
        f"[bold]{result.function}[/bold] ({escape(result.function_name)}, {result.env}): {status}  "
        f"duration {duration} ({start}), round trip {result.round_trip_ms:.0f} ms, "
        f"request {result.request_id}",
        highlight=False,
    )
    response = result.payload
    if isinstance(response, dict) and isinstance(response.get("body"), str):
        with contextlib.suppress(ValueError):  # an API proxy response: show the body as JSON
            response = {**response, "body": json.loads(response["body"])}
    console.print("[bold]response[/bold]")
    console.print(escape(json.dumps(response, indent=2, default=str)), highlight=False, soft_wrap=True)
    more = " (the last 4 KB: LogResult)" if result.logs_truncated else ""
    console.print(f"[bold]logs[/bold] ({len(result.logs)} lines{more})")
    for line in result.logs:
        console.print(f"  [dim]{escape(line)}[/dim]", highlight=False, soft_wrap=True)


# ---- doctor (rtp_cli.doctor) --------------------------------------------------------------------------
from rtp_cli import doctor as doctor_service  # noqa: E402

run_doctor = doctor_service.diagnose  # attribute so tests can inject a report


def _doctor_report(config: Any, identity: cdk_service.Identity, profile: str | None) -> Any:
    with _spinner(f"doctor: checking account {identity.account} for {config.stack_name}…"):
        try:
            return run_doctor(config, identity, profile)
        except doctor_service.DoctorError as error:
            _fail(str(error))


def _render_doctor(report: Any) -> None:
    styles = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red"}
    table = Table(title=f"rtp doctor: {report.env} (account {report.account}, {report.region})")
    for column in ("check", "result", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in report.checks:
        fix = check.fix if check.status == "PASS" else " ".join(p for p in (check.fix, check.doc) if p)
        table.add_row(check.name, f"[{styles[check.status]}]{check.status}[/]", check.detail, fix)
    console.print(table)


def _doctor_or_exit(config: Any, identity: cdk_service.Identity, profile: str | None) -> None:
    report = _doctor_report(config, identity, profile)
    _render_doctor(report)
    if not report.ok:
        err.print(
            f"[bold red]doctor: {len(report.failures)} check(s) failed: nothing was deployed[/bold red]"
        )
        raise typer.Exit(1)
    note = f" with {len(report.warnings)} warning(s)" if report.warnings else ""
    console.print(f"[green]doctor passed{note}[/green]")


@app.command()
def doctor(
    env: EnvOption = "dev",
    profile: ProfileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Read-only preflight of the AWS account and region an environment deploys to (`rtp deploy` runs it
    first).

    Credentials and account, stack state, CDK bootstrap version, the Powertools layer parameter, Lambda
    concurrency quota against the YAML's reservations, the API Gateway CloudWatch role and throttle,
    the alarm e-mail subscription. One row per check (PASS/WARN/FAIL, the fix, the AWS documentation
    page); exit 1 on any FAIL, 2 when it cannot run (credentials, account, region)."""
    if env == "local":
        _fail(
            "doctor checks an AWS account and region; `local` needs neither "
            "(rtp deploy --env local runs everything on this machine)"
        )
    config = _config(env)
    from rtp_cli.target import TargetError

    try:
        identity = get_identity(profile, config.region)
        cdk_service.check_account(config, identity)
    except TargetError as error:
        _fail(str(error))
    report = _doctor_report(config, identity, profile)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _render_doctor(report)
        summary = f"{len(report.failures)} failed, {len(report.warnings)} warning(s)"
        console.print(f"[{'green' if report.ok else 'bold red'}]doctor: {summary}[/]")
    if not report.ok:
        raise typer.Exit(1)


# ---- alarm test (rtp_cli.alarm_test) ------------------------------------------------------------------
alarm_app = typer.Typer(
    help="CloudWatch alarms of an AWS environment.", no_args_is_help=True, add_completion=False
)
app.add_typer(alarm_app, name="alarm")


def alarm_cloudwatch(target: Any) -> Any:
    """The CloudWatch client for `rtp alarm test` (attribute so tests can inject a stubbed one)."""
    return target.client("cloudwatch")


@alarm_app.command("test")
def alarm_test(
    env: EnvOption = "dev",
    profile: ProfileOption = None,
    alarm: Annotated[
        str | None, typer.Option(help="Test this alarm (default: the first of the stack's alarms in OK).")
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for the alarm action to show in its history.")
    ] = 60.0,
) -> None:
    """Prove the alarm notification path after a deploy: one alarm to ALARM and back to OK.

    Sets one of the stack's alarms to ALARM (SetAlarmState), waits for its history to show the SNS
    action succeeded (or prints the error it shows, e.g. the topic or key policy denied CloudWatch),
    then returns it to OK. Subscribers get a test ALARM and OK e-mail. Exit 1 if the action failed or
    did not run within --timeout."""
    if env == "local":
        _fail("alarms exist only in AWS; locally watch `rtp status --env local` and `rtp logs`")
    from botocore.exceptions import BotoCoreError, ClientError

    from rtp_cli import alarm_test as alarm_service
    from rtp_cli.target import TargetError, resolve_target
    from stack.config import ConfigError

    try:
        target = resolve_target(env, profile)
    except (ConfigError, TargetError) as error:
        _fail(str(error))
    topic = target.outputs.get("AlarmTopicArn")
    if not topic:
        _fail(
            f"stack {target.stack_name} has no AlarmTopicArn output: "
            f"redeploy it with `rtp deploy --env {env}`"
        )
    cloudwatch = alarm_cloudwatch(target)
    try:
        chosen = alarm_service.pick_alarm(cloudwatch, target.stack_name, topic, alarm)
        with _spinner(f"alarm test: {chosen}…") as status:

            def progress(message: str) -> None:
                if status is not None:
                    status.update(message)
                else:
                    err.print(message, highlight=False)

            result = alarm_service.run_alarm_test(
                cloudwatch, chosen, topic, timeout=timeout, progress=progress
            )
    except alarm_service.AlarmTestError as error:
        _fail(str(error), 1)
    except (ClientError, BotoCoreError) as error:
        _fail(f"CloudWatch refused the test: {error}")
    restored = (
        "returned to OK"
        if result.restored
        else f"[bold red]could not return it to OK[/bold red] ({result.restore_error}); it re-evaluates on "
        "its next period"
    )
    if result.ok:
        console.print(
            f"[bold green]notification path OK[/bold green]: {result.alarm} -> {result.topic_arn} "
            f"({result.detail}, after {result.waited_seconds:.0f} s); {restored}"
        )
        return
    console.print(f"[bold red]notification path FAILED[/bold red] for {result.alarm}: {result.detail}")
    if result.error:
        console.print(f"  [bold]error:[/bold] {result.error}", highlight=False)
        console.print(
            "  CloudWatch needs sns:Publish in the topic policy and kms:GenerateDataKey*/kms:Decrypt in the "
            "topic key's policy (https://repost.aws/knowledge-center/cloudwatch-receive-sns-for-alarm-trigger)"
        )
    console.print(f"  the alarm was {restored}")
    raise typer.Exit(1)


# ---- cost ---------------------------------------------------------------------------------------------
@app.command()
def cost(
    records_per_day: Annotated[
        float, typer.Option("--records-per-day", help="Records the environment receives per day.")
    ],
    env: EnvOption = "dev",
    records_per_request: Annotated[
        float | None,
        typer.Option(
            help="Records per POST /records (default: the environment's api.max_records_per_request)."
        ),
    ] = None,
    record_bytes: Annotated[
        int | None, typer.Option(help="Bytes per record (default: the size the model was measured at).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """A monthly estimate for an environment before it is deployed: line items from its template and
    configuration, and the per-record model measured by `make bench` (us-east-1 list prices)."""
    from rtp_cli.cost import CostError, estimate_env
    from stack.config import ConfigError

    try:
        with _spinner(f"synthesizing {env}…"):
            result = estimate_env(env, records_per_day, records_per_request, record_bytes)
    except (CostError, ConfigError) as error:
        _fail(str(error))
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    _render_cost(result)


def _render_cost(result: Any) -> None:
    table = Table(
        title=f"rtp cost: {result.env}, {result.records_per_day:,.0f} records/day, "
        f"{result.records_per_request:g} per request, {result.record_bytes} B each (per month, USD)"
    )
    for column, justify in (
        ("service", "left"),
        ("item", "left"),
        ("quantity", "right"),
        ("unit price", "right"),
        ("monthly $", "right"),
        ("note", "left"),
    ):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for item in result.items:
        table.add_row(
            item.service,
            item.item,
            f"{item.quantity:,.2f} {item.unit}",
            "-" if item.unit_price is None else f"{item.unit_price:.10g}",
            "[yellow]no price[/]" if item.monthly_usd is None else f"{item.monthly_usd:,.2f}",
            item.note,
        )
    table.add_row("", "[bold]total[/bold]", "", "", f"[bold]{result.total:,.2f}[/bold]", "")
    console.print(table)
    for note in result.notes:
        console.print(f"[dim]- {note}[/dim]", highlight=False)


# ---- records (rtp_cli.records): the REJECTED records of a time window ------------------------------------
app.command("records")(records_command)


# ---- trace (rtp_cli.trace): everything about one record or batch -----------------------------------------
app.command("trace")(trace_command)


# ---- reconcile (rtp_cli.reconcile): every record of a time window accounted for, hop by hop ------------
app.command("reconcile")(reconcile_command)


# ---- replay (rtp_cli.replay): run kept raw requests through the current transform again ------------------
app.command("replay")(replay_command)


# ---- operating commands (rtp_cli.operate: send, logs, dlq, status ID) ----------------------------------
try:
    from rtp_cli.operate.commands import register as register_operate_commands
except ImportError:  # pragma: no cover - the operate package is optional at this seam
    register_operate_commands = None  # type: ignore[assignment]
if register_operate_commands is not None:
    register_operate_commands(app)


def main() -> None:
    """The console script. A bug must not greet a user with a Python traceback: it gets one line, and
    RTP_DEBUG=1 shows the traceback for a bug report."""
    try:
        app()
    except Exception as error:
        if os.environ.get("RTP_DEBUG"):
            raise
        print_error(
            f"unexpected {type(error).__name__}: {error} (this is a bug in rtp; rerun with RTP_DEBUG=1 "
            "for the traceback)"
        )
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
