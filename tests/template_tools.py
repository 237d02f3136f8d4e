"""Small readers for synthesized CloudFormation templates, shared by the stack gate tests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Handler entry points identify the three pipeline functions in a template (the CDK provider is Node.js).
FUNCTION_HANDLERS = {
    "ingest": "api_ingest.handler",
    "processor": "queue_processor.handler",
    "query": "api_query.handler",
}

Template = dict[str, Any]


def resources(template: Template, type_name: str) -> dict[str, dict[str, Any]]:
    return {lid: res for lid, res in template["Resources"].items() if res["Type"] == type_name}


def only(template: Template, type_name: str) -> tuple[str, dict[str, Any]]:
    found = resources(template, type_name)
    assert len(found) == 1, f"expected exactly one {type_name}, found {sorted(found)}"
    return next(iter(found.items()))


def props(resource: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = resource.get("Properties", {})
    return properties


def target(value: Any) -> str | None:
    """The logical id a `{"Ref": x}` or `{"Fn::GetAtt": [x, attr]}` points at, else None."""
    if isinstance(value, dict):
        if "Ref" in value:
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            return str(value["Fn::GetAtt"][0])
    return None


def references(value: Any) -> set[str]:
    """Every logical id referenced anywhere inside `value`."""
    found: set[str] = set()
    if isinstance(value, dict):
        ref = target(value)
        if ref is not None:
            found.add(ref)
        for item in value.values():
            found |= references(item)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return found


def pipeline_functions(template: Template) -> dict[str, str]:
    """name (ingest/processor/query) -> logical id of its AWS::Lambda::Function."""
    by_handler = {
        props(res).get("Handler"): lid for lid, res in resources(template, "AWS::Lambda::Function").items()
    }
    missing = [name for name, handler in FUNCTION_HANDLERS.items() if handler not in by_handler]
    assert not missing, f"functions not found: {missing}"
    return {name: by_handler[handler] for name, handler in FUNCTION_HANDLERS.items()}


def key_id(template: Template) -> str:
    return only(template, "AWS::KMS::Key")[0]


def work_and_dead_letter_queues(template: Template) -> tuple[str, str]:
    """The live work queue (the one ingest's QUEUE_URL names) and its dead-letter queue."""
    work, _, dead_letter = pipeline_queues(template)
    return work, dead_letter


def pipeline_queues(template: Template) -> tuple[str, str, str]:
    """(work, replay, dead letter): the queues ingest's QUEUE_URL and the processor's REPLAY_QUEUE_URL
    name, and the one dead-letter queue both redrive to."""
    queues = resources(template, "AWS::SQS::Queue")
    functions = pipeline_functions(template)

    def named_by(function: str, variable: str) -> str:
        env = props(template["Resources"][functions[function]])["Environment"]["Variables"]
        return str(env[variable]["Ref"])

    work, replay = named_by("ingest", "QUEUE_URL"), named_by("processor", "REPLAY_QUEUE_URL")
    redriving = {lid for lid, res in queues.items() if "RedrivePolicy" in props(res)}
    assert redriving == {work, replay}, f"expected the work and replay queues to redrive, found {redriving}"
    dead_letters = {target(props(queues[lid])["RedrivePolicy"]["deadLetterTargetArn"]) for lid in redriving}
    assert len(dead_letters) == 1, dead_letters
    [dead_letter] = dead_letters
    assert dead_letter in queues and dead_letter not in redriving
    return work, replay, dead_letter


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(template: Template, role_id: str) -> list[dict[str, Any]]:
    """Every identity-policy statement attached to `role_id`: inline `Policies` and AWS::IAM::Policy."""
    role = template["Resources"][role_id]
    statements = [
        stmt
        for policy in props(role).get("Policies", [])
        for stmt in as_list(policy["PolicyDocument"]["Statement"])
    ]
    for res in resources(template, "AWS::IAM::Policy").values():
        if role_id in {target(r) for r in props(res).get("Roles", [])}:
            statements += as_list(props(res)["PolicyDocument"]["Statement"])
    return statements


def actions(statements: list[dict[str, Any]]) -> set[str]:
    return {action for stmt in statements for action in as_list(stmt.get("Action", []))}


def statements_for(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [stmt for stmt in statements if action in as_list(stmt.get("Action", []))]


def join_suffix(value: Any) -> str | None:
    """For `{"Fn::Join": ["", [..., "suffix"]]}` the literal suffix, else None."""
    if isinstance(value, dict) and "Fn::Join" in value:
        parts = value["Fn::Join"][1]
        if parts and isinstance(parts[-1], str):
            return str(parts[-1])
    return None


def tag_map(resource: dict[str, Any]) -> dict[str, str]:
    tags = props(resource).get("Tags", [])
    if isinstance(tags, dict):
        return {str(k): str(v) for k, v in tags.items()}
    return {tag["Key"]: tag["Value"] for tag in tags}


def pinned_version(package: str, requirements: Path = ROOT / "requirements.txt") -> str:
    """The exact `==` pin of `package` in a requirements file (names compared PEP 503-normalized)."""

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    for line in requirements.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*([A-Za-z0-9._-]+)(\[[^\]]*\])?\s*==\s*([^\s;#]+)", line)
        if match and norm(match.group(1)) == norm(package):
            return match.group(3)
    raise AssertionError(f"{package} has no exact pin in {requirements}")
