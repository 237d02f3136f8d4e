"""`rtp cost`: a monthly estimate from an environment's template and config and the measured model, and
the README's cost section, which must be what the committed model says."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import rtp_cli.app as cli
from bench import cost as bench_cost
from rtp_cli import cost as cost_service
from rtp_cli import synthcache
from rtp_cli.cost import CostError, Estimate, LineItem, Model, TemplateFacts, estimate
from rtp_cli.pricing import PRICES
from stack.config import load_config
from tests.tiers import examples

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.delenv("RTP_ENV", raising=False)


@pytest.fixture(scope="module")
def model() -> Model:
    return Model.load()


def _name(item: LineItem) -> tuple[str, str]:
    return item.service, re.sub(r"\s*\(.*?\)", "", item.item)  # "(512 MB)", "(14 days)"... vary by env


def _items(result: Estimate) -> dict[tuple[str, str], LineItem]:
    return {_name(i): i for i in result.items}


def test_prod_costs_more_than_dev_by_its_web_acl_and_provisioned_concurrency(
    templates: Mapping[str, dict[str, Any]], model: Model
) -> None:
    dev = estimate("dev", templates["dev"], load_config("dev"), model, 1_000_000, 500)
    prod = estimate("prod", templates["prod"], load_config("prod"), model, 1_000_000, 500)
    only_prod = set(_items(prod)) - set(_items(dev))
    assert only_prod == {
        ("WAF", "web ACLs"),
        ("WAF", "rules and managed rule groups"),
        ("WAF", "requests inspected"),
        ("Lambda", "ingest provisioned concurrency"),
        # prod moves raw requests to GLACIER_IR after 30 days (retention.raw_storage_class).
        ("S3", "raw request storage in GLACIER_IR"),
        ("S3", "lifecycle transitions to GLACIER_IR"),
    }
    assert set(_items(dev)) <= set(_items(prod))
    items = _items(prod)
    # The template's web ACL has five rules (rate limit, body size + three AWS managed rule groups).
    assert items[("WAF", "web ACLs")].monthly_usd == pytest.approx(5.00)
    assert items[("WAF", "rules and managed rule groups")].monthly_usd == pytest.approx(5 * 1.00)
    # 2 provisioned environments x 512 MB for 730 hours at the arm64 rate.
    provisioned = items[("Lambda", "ingest provisioned concurrency")]
    assert provisioned.quantity == pytest.approx(2 * 0.5 * 730 * 3600)
    assert provisioned.monthly_usd == pytest.approx(2 * 0.5 * 730 * 3600 * 0.0000033334)
    assert prod.total > dev.total
    # What both have follows each template: prod keeps logs 90 days, dev 7; prod's processor has 1 GB.
    assert "90-day" in items[("CloudWatch Logs", "log storage")].item
    assert "7-day" in _items(dev)[("CloudWatch Logs", "log storage")].item
    assert "1024 MB" in items[("Lambda", "processor duration")].item


def test_traffic_items_scale_with_records_and_fixed_items_do_not(
    templates: Mapping[str, dict[str, Any]], model: Model
) -> None:
    config = load_config("dev")
    small = _items(estimate("dev", templates["dev"], config, model, 100_000, 100))
    large = _items(estimate("dev", templates["dev"], config, model, 200_000, 100))
    assert large[("DynamoDB", "write request units")].quantity == pytest.approx(
        2 * small[("DynamoDB", "write request units")].quantity
    )
    assert large[("API Gateway", "REST API requests")].quantity == pytest.approx(
        2 * small[("API Gateway", "REST API requests")].quantity
    )
    for fixed in (
        ("KMS", "customer managed keys"),
        ("CloudWatch", "alarm metrics"),
        ("CloudWatch", "dashboards"),
    ):
        assert large[fixed].monthly_usd == small[fixed].monthly_usd


def test_fewer_records_per_request_cost_more_per_record(
    templates: Mapping[str, dict[str, Any]], model: Model
) -> None:
    config = load_config("dev")
    one = estimate("dev", templates["dev"], config, model, 1_000_000, 1)
    many = estimate("dev", templates["dev"], config, model, 1_000_000, 500)
    assert one.total > many.total
    assert _items(one)[("API Gateway", "REST API requests")].quantity == pytest.approx(
        500 * _items(many)[("API Gateway", "REST API requests")].quantity
    )


def test_template_facts_read_what_the_stack_synthesizes(templates: Mapping[str, dict[str, Any]]) -> None:
    prod, dev = TemplateFacts.from_template(templates["prod"]), TemplateFacts.from_template(templates["dev"])
    assert (
        prod.functions["ingest"].provisioned_concurrency == 2
        and dev.functions["ingest"].provisioned_concurrency == 0
    )
    assert (prod.web_acls, prod.waf_rules, dev.web_acls) == (1, 5, 0)
    assert prod.functions["processor"].memory_mb == 1024 and prod.functions["ingest"].architecture == "arm64"
    assert prod.kms_keys == 1 and prod.dashboards == 1 and prod.alarm_metrics >= 13
    assert prod.raw_expiration_days == 365 and dev.raw_expiration_days == 3
    assert (prod.raw_transition_days, prod.raw_storage_class) == (30, "GLACIER_IR")
    assert (dev.raw_transition_days, dev.raw_storage_class) == (None, None)
    assert prod.record_ttl_days == 365 and prod.pitr and prod.traced


@settings(
    max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    per_day=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    more=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    per_request=st.floats(min_value=1, max_value=500, allow_nan=False),
    size=st.integers(min_value=64, max_value=8192),
)
def test_estimates_are_finite_non_negative_and_grow_with_traffic(
    templates: Mapping[str, dict[str, Any]],
    model: Model,
    per_day: float,
    more: float,
    per_request: float,
    size: int,
) -> None:
    config = load_config("dev")
    base = estimate("dev", templates["dev"], config, model, per_day, per_request, size)
    bigger = estimate("dev", templates["dev"], config, model, per_day + more, per_request, size)
    for item in base.items:
        assert item.quantity >= 0 and (item.monthly_usd is None or item.monthly_usd >= 0), item
    assert bigger.total >= base.total - 1e-9
    assert base.total == pytest.approx(sum(i.monthly_usd or 0 for i in base.items))


def test_bigger_records_cost_more(templates: Mapping[str, dict[str, Any]], model: Model) -> None:
    config = load_config("dev")
    small = estimate("dev", templates["dev"], config, model, 1_000_000, 100, model.record_bytes)
    large = estimate("dev", templates["dev"], config, model, 1_000_000, 100, model.record_bytes * 4)
    assert (
        _items(large)[("S3", "raw request storage")].quantity
        > 3 * _items(small)[("S3", "raw request storage")].quantity
    )
    assert (
        _items(large)[("DynamoDB", "write request units")].quantity
        > _items(small)[("DynamoDB", "write request units")].quantity
    )


# --- raw storage follows the retention choice (issue 12) -----------------------------------------------
def _raw_facts(expire: int, after: int | None = None, storage_class: str | None = None) -> TemplateFacts:
    rule: dict[str, Any] = {"Prefix": "raw/", "Status": "Enabled", "ExpirationInDays": expire}
    if after is not None:
        rule["Transitions"] = [{"StorageClass": storage_class, "TransitionInDays": after}]
    bucket = {"Type": "AWS::S3::Bucket", "Properties": {"LifecycleConfiguration": {"Rules": [rule]}}}
    return TemplateFacts.from_template({"Resources": {"Raw": bucket}})


def _raw_items(facts: TemplateFacts, model: Model, per_request: float, size: int | None = None) -> list[Any]:
    per = model.per_record(per_request, size)
    records = 1_000_000 * cost_service.DAYS_PER_MONTH
    return cost_service.raw_storage_items(facts, load_config("prod"), per, records)


def test_raw_storage_splits_between_standard_and_the_transition_class(model: Model) -> None:
    """500 records of 1 KB a request: objects of ~500 KB move to GLACIER_IR after 30 days."""
    standard, glacier, transitions = _raw_items(_raw_facts(120, 30, "GLACIER_IR"), model, 500)
    per = model.per_record(500)
    gb_per_day = 1_000_000 * per.s3_bytes / cost_service.GB
    assert standard.item == "raw request storage (S3 Standard, first 30 days)"
    assert standard.quantity == pytest.approx(gb_per_day * 30)
    assert standard.unit_price == PRICES["s3.storage_gb_month"].usd
    assert glacier.item == "raw request storage in GLACIER_IR (days 30 to 120)"
    assert glacier.quantity == pytest.approx(gb_per_day * 90)
    assert glacier.monthly_usd == pytest.approx(gb_per_day * 90 * 0.004)
    assert "retrieval fee" in glacier.note
    # One transition request per raw object: 1,000,000 records a day / 500 a request, for a month.
    assert transitions.quantity == pytest.approx(2000 * cost_service.DAYS_PER_MONTH)
    assert transitions.monthly_usd == pytest.approx(2000 * cost_service.DAYS_PER_MONTH * 0.02 / 1000)
    (all_standard,) = _raw_items(_raw_facts(120), model, 500)
    assert all_standard.quantity == pytest.approx(standard.quantity + glacier.quantity)
    assert sum(i.monthly_usd for i in (standard, glacier, transitions)) < all_standard.monthly_usd


@pytest.mark.parametrize(("storage_class", "price"), [("STANDARD_IA", 0.0125), ("ONEZONE_IA", 0.01)])
def test_each_transition_class_has_its_own_prices(model: Model, storage_class: str, price: float) -> None:
    _, moved, transitions = _raw_items(_raw_facts(90, 30, storage_class), model, 500)
    assert moved.unit_price == price
    assert transitions.unit_price == pytest.approx(0.01 / 1000)


def test_small_requests_stay_in_standard(model: Model) -> None:
    """10 records of 1 KB a request: 10 KB objects are under S3 Lifecycle's 128 KB default: no transition."""
    (only,) = _raw_items(_raw_facts(120, 30, "GLACIER_IR"), model, 10)
    assert only.item == "raw request storage (expires after 120 days)"
    assert only.unit_price == PRICES["s3.storage_gb_month"].usd
    assert "none moves to GLACIER_IR" in only.note


def test_the_transition_line_says_whether_it_pays_off(model: Model) -> None:
    """Each transition costs a request: for objects just over 128 KB kept 90 days in GLACIER_IR it costs more
    than the storage it saves, for full 500-record requests kept a year it saves."""
    *_, small = _raw_items(_raw_facts(120, 30, "GLACIER_IR"), model, 130)
    assert "MORE than keeping every raw request in S3 Standard" in small.note
    *_, full = _raw_items(_raw_facts(365, 30, "GLACIER_IR"), model, 500)
    assert "less than keeping every raw request in S3 Standard" in full.note
    (standard,) = _raw_items(_raw_facts(365), model, 500)
    split = _raw_items(_raw_facts(365, 30, "GLACIER_IR"), model, 500)
    saved = standard.monthly_usd - sum(i.monthly_usd for i in split)
    assert saved > 0 and f"${saved:,.2f} a month less" in full.note


@settings(max_examples=examples(60), deadline=None)
@given(per_request=st.floats(min_value=1, max_value=500), size=st.integers(min_value=64, max_value=8192))
def test_raw_storage_moves_exactly_the_objects_of_128_kb_or_more(
    model: Model, per_request: float, size: int
) -> None:
    per = model.per_record(per_request, size)
    items = _raw_items(_raw_facts(120, 30, "STANDARD_IA"), model, per_request, size)
    moved = per.s3_bytes / per.s3_puts >= 128 * 1024
    assert any("transitions" in i.item for i in items) == moved
    (all_standard,) = _raw_items(_raw_facts(120), model, per_request, size)
    stored = sum(i.quantity for i in items if "storage" in i.item)
    assert stored == pytest.approx(all_standard.quantity)


# --- the command ----------------------------------------------------------------------------------------
@pytest.fixture
def cached_synth(monkeypatch: pytest.MonkeyPatch, template_paths: Mapping[str, Path]) -> None:
    """`rtp cost` synthesizes through the cache; here it gets the session's templates."""

    def synthesize_cached(env: str, *_: Any, **__: Any) -> synthcache.CachedSynth:
        return synthcache.CachedSynth(template_paths[env], f"rtp-{env}", True, [])

    monkeypatch.setattr(synthcache, "synthesize_cached", synthesize_cached)


def test_rtp_cost_prints_line_items_and_a_total(cached_synth: None) -> None:
    result = runner.invoke(cli.app, ["cost", "--env", "prod", "--records-per-day", "1000000"])
    assert result.exit_code == 0, result.output
    for text in ("rtp cost: prod", "provisioned concurrency", "web ACLs", "write request units", "total"):
        assert text in result.output


def test_rtp_cost_json_adds_up(cached_synth: None) -> None:
    result = runner.invoke(
        cli.app,
        [
            "cost",
            "--env",
            "dev",
            "--records-per-day",
            "250000",
            "--records-per-request",
            "10",
            "--record-bytes",
            "2048",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert (
        document["env"] == "dev"
        and document["records_per_request"] == 10
        and document["record_bytes"] == 2048
    )
    assert document["total_monthly_usd"] == pytest.approx(
        sum(i["monthly_usd"] or 0 for i in document["items"]), abs=0.01
    )
    assert document["prices_date"] and document["model"]["commit"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "nope", "--records-per-day", "10"], "nope"),
        (["--records-per-day", "-5"], "--records-per-day"),
        (["--records-per-day", "nan"], "--records-per-day"),
        (["--records-per-day", "10", "--records-per-request", "0"], "--records-per-request"),
        (["--records-per-day", "10", "--records-per-request", "501"], "max_records_per_request"),
        (["--records-per-day", "10", "--record-bytes", "0"], "--record-bytes"),
    ],
    ids=["unknown-env", "negative", "nan", "zero-per-request", "over-the-api-limit", "zero-bytes"],
)
def test_bad_input_exits_2_with_a_clear_message(args: list[str], message: str) -> None:
    result = runner.invoke(cli.app, ["cost", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_records_per_day_is_required() -> None:
    result = runner.invoke(cli.app, ["cost", "--env", "dev"])
    assert result.exit_code == 2
    assert "--records-per-day" in result.output


def test_a_broken_model_is_refused_with_the_way_out(tmp_path: Path) -> None:
    broken = tmp_path / "model.json"
    broken.write_text("{}")
    with pytest.raises(CostError, match="python -m bench cost"):
        Model.load(broken)
    broken.write_text("not json")
    with pytest.raises(CostError, match="cannot read"):
        Model.load(broken)


# --- the committed model and the README ------------------------------------------------------------------
def test_the_model_ships_with_its_provenance_and_every_measured_batch_size(model: Model) -> None:
    document = model.document
    assert document["measured_at"] and document["commit"] and document["prices_date"]
    assert [s["records_per_request"] for s in model.scenarios] == [1, 10, 100, 500]
    for scenario in model.scenarios:
        assert scenario["dynamodb"]["write_units"] > 0
        assert scenario["calls"]["ingest"].get("sqs.SendMessage") == scenario["requests"]


def test_the_models_dollars_follow_the_current_price_table(
    templates: Mapping[str, dict[str, Any]], model: Model
) -> None:
    """Change a price and this fails until the bench is rerun (so the README never shows stale $)."""
    env = model.document["env"]
    facts = TemplateFacts.from_template(templates[env])
    for scenario in model.scenarios:
        usd, _ = cost_service.per_million(facts, model.scenario_per_record(scenario), load_config(env))
        assert usd == pytest.approx(scenario["usd_per_million"], abs=1e-3)


def test_a_changed_price_would_be_caught(
    templates: Mapping[str, dict[str, Any]], model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = model.document["env"]
    facts = TemplateFacts.from_template(templates[env])
    scenario = model.scenarios[-1]
    price = PRICES["dynamodb.write_request_unit"]
    monkeypatch.setitem(PRICES, price.key, type(price)(price.key, price.usd * 2, price.unit, price.source))  # type: ignore[operator]
    usd, _ = cost_service.per_million(facts, model.scenario_per_record(scenario), load_config(env))
    assert usd != pytest.approx(scenario["usd_per_million"], abs=1e-3)


def test_readme_cost_section_is_generated_from_the_committed_model(model: Model) -> None:
    section = bench_cost.readme_section(ROOT / "README.md")
    assert section, "README.md has no generated cost section"
    assert section == bench_cost.render_markdown(model), "regenerate: python -m bench cost --readme"


def test_readme_makes_no_hand_typed_cost_claim() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "one transactional write (2 WCU)" not in readme
