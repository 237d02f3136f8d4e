"""Config gate: every kind of bad YAML fails with a message naming the file, the key, the bad value and
what is allowed. Each case writes a small file into a temporary config directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from stack.config import (
    CONFIG_DIR,
    ConfigError,
    EnvironmentConfig,
    available_environments,
    load_config,
)
from stack.regions import POWERTOOLS_LAYER_REGIONS
from stack.synth import synthesize


def write(config_dir: Path, name: str, text: str) -> Path:
    path = config_dir / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error_for(config_dir: Path, name: str, text: str) -> str:
    path = write(config_dir, name, text)
    with pytest.raises(ConfigError) as caught:
        load_config(name, config_dir=config_dir)
    message = str(caught.value)
    assert str(path) in message, "the message names the file"
    return message


def test_shipped_environments_load() -> None:
    assert set(available_environments()) >= {"dev", "staging", "prod", "local"}
    for env in available_environments():
        config = load_config(env)
        assert config.name == env
        assert config.stack_name == f"{config.project}-{env}"


def test_empty_file_means_all_defaults(tmp_path: Path) -> None:
    write(tmp_path, "blank", "")
    config = load_config("blank", config_dir=tmp_path)
    assert config == EnvironmentConfig(name="blank")
    assert config.tags == {} and config.all_tags == {"Project": "rtp", "Environment": "blank"}
    assert config.functions.processor.reserved_concurrency is None
    assert config.api.waf is False and config.alarms.email is None


def test_comment_only_file_means_all_defaults(tmp_path: Path) -> None:
    write(tmp_path, "comments", "# nothing set here\n")
    assert load_config("comments", config_dir=tmp_path) == EnvironmentConfig(name="comments")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = error_for(tmp_path, "typo", "projct: rtp\n")
    assert "projct = 'rtp': unknown key" in message
    assert "allowed here: name, project, account" in message


def test_unknown_nested_key(tmp_path: Path) -> None:
    message = error_for(tmp_path, "typo", "api:\n  throttle_rate_limt: 5\n")
    assert "api.throttle_rate_limt = 5: unknown key" in message
    assert "throttle_rate_limit" in message  # the allowed keys, so the typo is obvious


def test_unknown_deeply_nested_key(tmp_path: Path) -> None:
    message = error_for(tmp_path, "typo", "functions:\n  ingest:\n    memroy_mb: 512\n")
    assert "functions.ingest.memroy_mb = 512: unknown key" in message
    assert "memory_mb" in message and "provisioned_concurrency" in message


def test_wrong_type(tmp_path: Path) -> None:
    message = error_for(tmp_path, "types", "api:\n  throttle_burst_limit: lots\n")
    assert "api.throttle_burst_limit = 'lots'" in message
    assert "valid integer" in message


def test_wrong_type_for_a_section(tmp_path: Path) -> None:
    message = error_for(tmp_path, "types", "retention: 30\n")
    assert "retention = 30" in message and "dictionary" in message


def test_out_of_range(tmp_path: Path) -> None:
    message = error_for(tmp_path, "range", "processing:\n  max_concurrency: 1\n")
    assert "processing.max_concurrency = 1" in message
    assert "greater than or equal to 2" in message


def test_value_not_in_allowed_set(tmp_path: Path) -> None:
    message = error_for(tmp_path, "logs", "retention:\n  log_days: 8\n")
    assert "retention.log_days = 8" in message
    assert "1, 3, 5, 7, 14, 30" in message


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    message = error_for(tmp_path, "many", "api:\n  waf: maybe\nprocessing:\n  batch_size: 0\nbogus: 1\n")
    assert message.splitlines()[0].endswith("3 invalid setting(s)")
    assert "api.waf = 'maybe'" in message
    assert "processing.batch_size = 0" in message
    assert "bogus = 1: unknown key" in message


def test_bad_email(tmp_path: Path) -> None:
    message = error_for(tmp_path, "mail", "alarms:\n  email: oncall-at-example\n")
    assert "alarms.email = 'oncall-at-example'" in message
    assert "e-mail address, like oncall@example.com" in message


def test_reserved_concurrency_beyond_account_quota(tmp_path: Path) -> None:
    text = "account_concurrency_limit: 10\nfunctions:\n  query:\n    reserved_concurrency: 5\n"
    message = error_for(tmp_path, "quota", text)
    assert "functions.*.reserved_concurrency adds up to 5" in message
    assert "account_concurrency_limit 10" in message and "at most 0" in message
    assert "100 unreserved" in message


def test_reserved_concurrency_sum_counts_every_function(tmp_path: Path) -> None:
    text = (
        "account_concurrency_limit: 200\n"
        "functions:\n  ingest:\n    reserved_concurrency: 60\n  query:\n    reserved_concurrency: 50\n"
    )
    message = error_for(tmp_path, "quota", text)
    assert "adds up to 110" in message and "at most 100" in message
    write(tmp_path, "quota", text.replace("50", "40"))
    assert load_config("quota", config_dir=tmp_path).functions.query.reserved_concurrency == 40


def test_processor_reservation_below_event_source_concurrency(tmp_path: Path) -> None:
    text = "functions:\n  processor:\n    reserved_concurrency: 3\nprocessing:\n  max_concurrency: 5\n"
    message = error_for(tmp_path, "starved", text)
    assert "functions.processor.reserved_concurrency (3)" in message
    assert "processing.max_concurrency + processing.replay_concurrency (5 + 2)" in message


def test_processor_reservation_leaves_room_for_live_traffic_during_a_replay(tmp_path: Path) -> None:
    text = "functions:\n  processor:\n    reserved_concurrency: 6\nprocessing:\n  max_concurrency: 5\n"
    assert "live traffic would be throttled during a replay" in error_for(tmp_path, "replay", text)
    write(tmp_path, "replay", text.replace("reserved_concurrency: 6", "reserved_concurrency: 7"))
    assert load_config("replay", config_dir=tmp_path).processing.replay_concurrency == 2


def test_replay_concurrency_below_the_event_source_minimum(tmp_path: Path) -> None:
    assert "replay_concurrency" in error_for(tmp_path, "one", "processing:\n  replay_concurrency: 1\n")


@pytest.mark.parametrize("function", ["ingest", "query"])
def test_api_function_timeout_beyond_api_gateway_limit(tmp_path: Path, function: str) -> None:
    message = error_for(tmp_path, "slow", f"functions:\n  {function}:\n    timeout_seconds: 30\n")
    assert f"functions.{function}.timeout_seconds is 30" in message
    assert "at most 29" in message


def test_api_function_timeout_at_the_limit_is_fine(tmp_path: Path) -> None:
    write(tmp_path, "edge", "functions:\n  ingest:\n    timeout_seconds: 29\n")
    assert load_config("edge", config_dir=tmp_path).functions.ingest.timeout_seconds == 29


def test_account_without_region(tmp_path: Path) -> None:
    message = error_for(tmp_path, "pinned", 'account: "123456789012"\n')
    assert "account = '123456789012' and region = None" in message
    assert "set both" in message


def test_account_and_region_together(tmp_path: Path) -> None:
    write(tmp_path, "pinned", 'account: "123456789012"\nregion: eu-west-1\n')
    config = load_config("pinned", config_dir=tmp_path)
    assert (config.account, config.region) == ("123456789012", "eu-west-1")


def test_region_without_the_powertools_layer_is_refused_offline(tmp_path: Path) -> None:
    """ap-southeast-6 is a real AWS region, but Powertools publishes no layer (and no SSM parameter) there
    (powertools-lambda-python issue 7355): refused when the file is loaded, with what to use instead."""
    message = error_for(tmp_path, "nz", 'account: "123456789012"\nregion: ap-southeast-6\n')
    assert "region = 'ap-southeast-6'" in message
    assert "Powertools Lambda layer is not published in 'ap-southeast-6'" in message
    assert "eu-west-1" in message and "stack/regions.py" in message


@given(st.sampled_from(sorted(POWERTOOLS_LAYER_REGIONS)))
def test_every_listed_region_loads(region: str) -> None:
    config = EnvironmentConfig.model_validate({"name": "x", "account": "123456789012", "region": region})
    assert config.region == region


@given(
    st.from_regex(r"^[a-z]{2}(-gov)?-[a-z]+-\d$", fullmatch=True).filter(
        lambda region: region not in POWERTOOLS_LAYER_REGIONS
    )
)
def test_every_other_well_formed_region_is_refused(region: str) -> None:
    with pytest.raises(ValidationError, match="Powertools Lambda layer is not published"):
        EnvironmentConfig.model_validate({"name": "x", "account": "123456789012", "region": region})


def test_region_list_is_the_documented_one() -> None:
    """stack/regions.py copies the region matrix of Powertools' update_ssm.yml (32 regions); a change to it
    must be deliberate. No GovCloud or China regions: their layers carry no such parameter."""
    assert len(POWERTOOLS_LAYER_REGIONS) == 32
    newest = {"ap-southeast-5", "ap-southeast-7", "mx-central-1", "ca-west-1"}
    assert {"us-east-1", "eu-west-1", *newest} <= POWERTOOLS_LAYER_REGIONS
    assert not {r for r in POWERTOOLS_LAYER_REGIONS if "-gov-" in r or r.startswith("cn-")}


def test_name_mismatch(tmp_path: Path) -> None:
    message = error_for(tmp_path, "staging", "name: prod\n")
    assert "name = 'prod'" in message and "'staging'" in message


def test_invalid_yaml(tmp_path: Path) -> None:
    message = error_for(tmp_path, "broken", "api: [\n  waf: true\n")
    assert "not valid YAML" in message and "line" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    message = error_for(tmp_path, "listy", "- dev\n- prod\n")
    assert "must be a mapping" in message and "list" in message


def test_reserved_tag_keys_come_from_name_and_project(tmp_path: Path) -> None:
    message = error_for(tmp_path, "tags", "tags:\n  Environment: other\n")
    assert "Environment" in message and "remove them from tags" in message


def test_missing_file_lists_known_environments(tmp_path: Path) -> None:
    write(tmp_path, "dev", "")
    write(tmp_path, "prod", "")
    with pytest.raises(ConfigError) as caught:
        load_config("qa", config_dir=tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "qa.yaml") in message
    assert "known environments: dev, prod" in message


def test_bad_environment_name() -> None:
    with pytest.raises(ConfigError, match="environment name 'Prod_1' must match"):
        load_config("Prod_1")


def test_config_error_fails_synth_before_any_template(tmp_path: Path) -> None:
    """main.py and the CLI synthesize through stack.synth: a bad config stops it with the message."""
    with pytest.raises(ConfigError, match="no such environment file"):
        synthesize("nonexistent-env", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_defaults_the_issue_names() -> None:
    """Defaults fixed by the requirements: maxReceiveCount 3, at most 500 records per request; the body
    limit is the largest that always fits Lambda's 6 MB invoke once escaped into the proxy event."""
    defaults = EnvironmentConfig(name="x")
    assert defaults.processing.max_receive_count == 3
    assert defaults.api.max_records_per_request == 500
    assert defaults.api.max_body_bytes == 3_000_000
    assert sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) == available_environments()


def test_the_largest_body_allowed_still_fits_lambdas_invoke_payload() -> None:
    """The worst case for the proxy event: a valid JSON body of the maximum size made of backslashes,
    each of which JSON escaping doubles. It must still fit Lambda's 6 MB synchronous invoke payload with
    the 256 KB kept for headers and request context."""
    limit = EnvironmentConfig(name="x").api.max_body_bytes
    body = json.dumps(["\\" * ((limit - 4) // 2)])  # ["\\\\...\\"]: every byte but 4 escapes
    assert limit - 1 <= len(body) <= limit
    event = json.dumps({"body": body, "isBase64Encoded": False})
    assert len(event) > 1.99 * len(body)  # the body really doubled
    assert len(event) + 256 * 1024 <= 6 * 1024 * 1024
