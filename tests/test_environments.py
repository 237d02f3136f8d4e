"""Environments differ exactly where their YAML differs.

Two complementary checks:
- one-key variants: dev's config with exactly one key changed, synthesized in memory, differs from dev's
  template in exactly the properties that key drives (a handful of synths, ~1 s each);
- dev vs prod: every difference between the two shipped templates is explained by a key whose value
  differs between config/dev.yaml and config/prod.yaml, and every such key changes something.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from stack.config import EnvironmentConfig, load_config
from stack.synth import SynthResult, synthesize
from tests.conftest import ENVIRONMENTS

Leaves = dict[str, Any]


def normalize(template: dict[str, Any], env: str, project: str = "rtp") -> dict[str, Any]:
    """Replace what only the environment's *name* changes (stack name in values and logical ids, the
    Environment tag) and the hashes CDK appends to logical ids, so two environments line up."""
    text = json.dumps(template, sort_keys=True)
    ids = sorted(template["Resources"], key=len, reverse=True)
    mapping = {}
    for logical_id in ids:
        short = re.sub(rf"{project}{env}([A-Za-z]+)[0-9A-F]{{8}}", r"STACK\1", logical_id)
        short = re.sub(r"[0-9A-F]{8}([0-9a-f]{32})?$", "", short)
        mapping[logical_id] = short
    assert len(set(mapping.values())) == len(mapping), "normalized logical ids must stay unique"
    for logical_id in ids:
        text = re.sub(rf'(?<=")({re.escape(logical_id)})(?=[".])', mapping[logical_id], text)
    text = text.replace(
        f'{{"Key": "Environment", "Value": "{env}"}}', '{"Key": "Environment", "Value": "ENV"}'
    )
    for literal in (f"{project}-{env}", f"config/{env}.yaml", f"environment {env})"):
        text = text.replace(literal, literal.replace(env, "ENV"))
    normalized: dict[str, Any] = json.loads(text)
    return normalized


def leaves(node: Any, path: str = "") -> Leaves:
    if isinstance(node, dict) and node:
        out: Leaves = {}
        for key, value in node.items():
            out |= leaves(value, f"{path}/{key}" if path else str(key))
        return out
    if isinstance(node, list) and node:
        out = {}
        for index, value in enumerate(node):
            out |= leaves(value, f"{path}/{index}")
        return out
    return {path: node}


def diff(a: dict[str, Any], b: dict[str, Any]) -> set[str]:
    """Paths that differ; a resource only one side has counts as one path `Resources/<id>`."""
    changed: set[str] = set()
    only = set(a["Resources"]) ^ set(b["Resources"])
    changed |= {f"Resources/{lid}" for lid in only}
    trimmed = [{**t, "Resources": {k: v for k, v in t["Resources"].items() if k not in only}} for t in (a, b)]
    left, right = leaves(trimmed[0]), leaves(trimmed[1])
    changed |= {p for p in left.keys() | right.keys() if left.get(p, object()) != right.get(p, object())}
    return changed


def config_leaves(config: EnvironmentConfig) -> Leaves:
    return leaves(config.model_dump(mode="json"))


# --- stack identity ---------------------------------------------------------------------------------


def test_stack_names_and_api_names_differ_per_environment(synthesized: Mapping[str, SynthResult]) -> None:
    names = {env: synthesized[env].config.stack_name for env in ENVIRONMENTS}
    assert len(set(names.values())) == len(ENVIRONMENTS)
    for env, name in names.items():
        assert name == f"rtp-{env}"
        assert synthesized[env].template_path.name == f"{name}.template.json"


# --- one key at a time ------------------------------------------------------------------------------


def _with(config: EnvironmentConfig, dotted: str, value: Any) -> EnvironmentConfig:
    """A copy of `config` with one (dotted) key set, validated like a file would be."""
    data = config.model_dump()
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[part]
    assert leaf in node, dotted
    node[leaf] = value
    return EnvironmentConfig.model_validate(data)


STAGE = "^Resources/IngestApiDeploymentStagev1/Properties/MethodSettings/0/"
RAW_EXPIRY = "^Resources/DataRawBucket/Properties/LifecycleConfiguration/Rules/0/ExpirationInDays$"
RAW_TRANSITION = "^Resources/DataRawBucket/Properties/LifecycleConfiguration/Rules/0/Transitions(/|$)"
REDRIVE = "^Resources/Queues(Work|Replay)Queue/Properties/RedrivePolicy/maxReceiveCount$"
TAGS = r"^Resources/[^/]+/Properties/Tags/\d+/(Key|Value)$"
FUNCTIONS = r"Functions(Ingest|Processor|Query)"
FUNCTION_ENV = rf"^Resources/{FUNCTIONS}/Properties/Environment/Variables/"

VARIANTS: dict[str, tuple[Any, list[str]]] = {
    # key: (new value, regexes for every template path it may change)
    "api.throttle_rate_limit": (77, [f"{STAGE}ThrottlingRateLimit$"]),
    "retention.raw_objects_days": (9, [RAW_EXPIRY]),
    "processing.max_receive_count": (7, [REDRIVE]),
    "alarms.api_latency_p99_ms": (1234, [r"^Resources/MonitoringApiLatencyP99/Properties/Threshold$"]),
    "functions.processor.timeout_seconds": (
        90,
        [
            r"^Resources/FunctionsProcessor/Properties/Timeout$",
            r"^Resources/Queues(Work|Replay)Queue/Properties/VisibilityTimeout$",
            r"^Resources/MonitoringProcessorDurationP99/Properties/Threshold$",
        ],
    ),
    "tags": ({"Owner": "data-platform", "CostCenter": "1001", "Team": "ingest"}, [TAGS]),
}


@pytest.fixture(scope="module")
def dev_normalized(templates: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    return normalize(templates["dev"], "dev")


@pytest.mark.parametrize("dotted", list(VARIANTS))
def test_changing_one_key_changes_only_what_it_drives(
    dotted: str, dev_normalized: dict[str, Any], tmp_path: Path
) -> None:
    value, expected = VARIANTS[dotted]
    dev = load_config("dev")
    variant = _with(dev, dotted, value)
    assert config_leaves(variant) != config_leaves(dev)
    result = synthesize("dev", tmp_path, config=variant)
    assert result.findings == []
    changed = diff(dev_normalized, normalize(result.template, "dev"))
    assert changed, f"{dotted} changed nothing in the template"
    unexplained = sorted(p for p in changed if not any(re.search(rx, p) for rx in expected))
    assert unexplained == [], f"{dotted} also changed: {unexplained[:20]}"
    for rx in expected:
        assert any(re.search(rx, p) for p in changed), f"{dotted} did not change {rx}"


def test_tag_change_reaches_every_taggable_resource(templates: Mapping[str, dict[str, Any]]) -> None:
    """prod's YAML adds a DataClassification tag that dev's lacks: every tagged prod resource has it and
    no dev resource does."""
    prod, dev = templates["prod"]["Resources"], templates["dev"]["Resources"]
    tagged_prod = {lid for lid, r in prod.items() if "Tags" in r.get("Properties", {})}
    with_classification = {
        lid
        for lid in tagged_prod
        if any(t["Key"] == "DataClassification" for t in prod[lid]["Properties"]["Tags"])
    }
    assert with_classification == tagged_prod
    assert not any(
        t["Key"] == "DataClassification"
        for r in dev.values()
        for t in r.get("Properties", {}).get("Tags", [])
    )


# --- dev vs prod ------------------------------------------------------------------------------------

# Every config key (dotted, leaf) -> regexes for the normalized template paths it may change.
EFFECTS: dict[str, list[str]] = {
    "log_level": [f"{FUNCTION_ENV}POWERTOOLS_LOG_LEVEL$"],
    "retention.record_ttl_days": [f"{FUNCTION_ENV}RECORD_TTL_DAYS$"],
    "retention.log_days": [
        r"^Resources/[^/]+/Properties/RetentionInDays$",
        r"^Resources/DataAccessLogs/Properties/LifecycleConfiguration/Rules/0/ExpirationInDays$",
    ],
    "retention.raw_objects_days": [RAW_EXPIRY],
    "retention.raw_transition_days": [RAW_TRANSITION],
    "retention.raw_storage_class": [RAW_TRANSITION],
    "tags.DataClassification": [TAGS],
    "api.throttle_rate_limit": [f"{STAGE}ThrottlingRateLimit$"],
    "api.throttle_burst_limit": [f"{STAGE}ThrottlingBurstLimit$"],
    "api.waf": [
        r"^Resources/IngestWebAcl(Association)?$",
        r"^Resources/IngestApi[^/]*/Metadata/cdk_nag/",  # the "no WAF in this environment" acknowledgement
    ],
    "api.waf_rate_limit_per_5min": [r"^Resources/IngestWebAcl$"],
    "functions.ingest.memory_mb": [r"^Resources/FunctionsIngest/Properties/MemorySize$"],
    "functions.processor.memory_mb": [r"^Resources/FunctionsProcessor/Properties/MemorySize$"],
    "functions.ingest.reserved_concurrency": [
        r"^Resources/FunctionsIngest/Properties/ReservedConcurrentExecutions$",
        r"^Resources/FunctionsIngest/Metadata/checkov/",
    ],
    "functions.processor.reserved_concurrency": [
        r"^Resources/FunctionsProcessor/Properties/ReservedConcurrentExecutions$",
        r"^Resources/FunctionsProcessor/Metadata/checkov/",
    ],
    "functions.query.reserved_concurrency": [
        r"^Resources/FunctionsQuery/Properties/ReservedConcurrentExecutions$",
        r"^Resources/FunctionsQuery/Metadata/checkov/",
    ],
    "functions.ingest.provisioned_concurrency": [
        r"^Resources/FunctionsIngest(Live|CurrentVersion)$",
        # API Gateway invokes (and may invoke) the warm alias instead of the function.
        r"^Resources/IngestApirecordsPOST[^/]*/Properties/(Integration/Uri|FunctionName)(/|$)",
    ],
    "processing.max_concurrency": [
        r"^Resources/FunctionsProcessorWorkQueueSource/Properties/ScalingConfig/MaximumConcurrency$"
    ],
    "processing.replay_concurrency": [
        r"^Resources/FunctionsProcessorReplayQueueSource/Properties/ScalingConfig/MaximumConcurrency$"
    ],
    "processing.max_receive_count": [REDRIVE],
    "alarms.email": [
        r"^Resources/MonitoringAlarmTopic[a-z]+$",  # the e-mail subscription
        r"^Resources/MonitoringAlarmTopic(Policy)?/Metadata/cdk_nag(/|$)",  # its redrive acknowledgement
    ],
    "alarms.api_latency_p99_ms": [r"^Resources/MonitoringApiLatencyP99/Properties/Threshold$"],
    "alarms.queue_oldest_message_age_seconds": [r"^Resources/MonitoringProcessingLag/Properties/Threshold$"],
}


def _differing_keys(a: EnvironmentConfig, b: EnvironmentConfig) -> set[str]:
    left, right = config_leaves(a), config_leaves(b)
    keys = {k.replace("/", ".") for k in left.keys() | right.keys() if left.get(k) != right.get(k)}
    return keys - {"name"}  # the name is normalized away (stack name, Environment tag)


def test_dev_and_prod_differ_exactly_where_their_yaml_differs(
    templates: Mapping[str, dict[str, Any]],
) -> None:
    dev, prod = load_config("dev"), load_config("prod")
    keys = _differing_keys(dev, prod)
    unmapped = keys - set(EFFECTS)
    assert not unmapped, f"add the expected template effect of {sorted(unmapped)} to EFFECTS"
    changed = diff(normalize(templates["dev"], "dev"), normalize(templates["prod"], "prod"))

    def explained_by(path: str) -> set[str]:
        return {key for key in keys if any(re.search(rx, path) for rx in EFFECTS[key])}

    unexplained = sorted(p for p in changed if not explained_by(p))
    assert unexplained == [], f"differences no YAML key explains: {unexplained[:20]}"
    inert = sorted(key for key in keys if not any(key in explained_by(p) for p in changed))
    assert inert == [], f"keys that differ in YAML but change nothing in the template: {inert}"


def test_the_comparison_catches_an_unexplained_difference(templates: Mapping[str, dict[str, Any]]) -> None:
    """Guard for the test above: a change no key explains is reported."""
    prod = json.loads(json.dumps(templates["prod"]))
    for lid, resource in prod["Resources"].items():
        if lid.startswith("DataTable"):
            resource["Properties"]["BillingMode"] = "PROVISIONED"
    changed = diff(normalize(templates["dev"], "dev"), normalize(prod, "prod"))
    keys = _differing_keys(load_config("dev"), load_config("prod"))
    explained: Callable[[str], bool] = lambda p: any(re.search(rx, p) for k in keys for rx in EFFECTS[k])  # noqa: E731
    assert [p for p in changed if not explained(p)] == ["Resources/DataTable/Properties/BillingMode"]
