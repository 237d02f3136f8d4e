"""A function's settings fail at import (its cold start) with the missing variable's name, and each
handler requires exactly the resource names the template gives that function."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from rtp_pipeline.settings import (
    INGEST_SETTINGS,
    PROCESSOR_SETTINGS,
    QUERY_SETTINGS,
    Settings,
    SettingsError,
    require_settings,
)

from tests.handlers.harness import Pipeline

HANDLERS = Path(__file__).resolve().parents[2] / "handlers"
REQUIRED = {"ingest": INGEST_SETTINGS, "processor": PROCESSOR_SETTINGS, "query": QUERY_SETTINGS}


def test_a_missing_or_empty_variable_is_named() -> None:
    with pytest.raises(SettingsError, match=r"^QUEUE_URL is not set in the function's environment"):
        Settings.from_environment({"TABLE_NAME": "t", "BUCKET_NAME": "b"}, required=INGEST_SETTINGS)
    with pytest.raises(SettingsError, match=r"^BUCKET_NAME, QUEUE_URL are not set"):
        Settings.from_environment({"TABLE_NAME": "t", "BUCKET_NAME": " "}, required=INGEST_SETTINGS)
    with pytest.raises(SettingsError, match=r"MAX_RECORDS='many' is not an integer"):
        Settings.from_environment({"TABLE_NAME": "t", "MAX_RECORDS": "many"})
    settings = Settings.from_environment({"TABLE_NAME": "t", "BUCKET_NAME": "b"}, required=QUERY_SETTINGS)
    assert (settings.table_name, settings.bucket_name, settings.queue_url) == ("t", "b", "")


def test_require_settings_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLE_NAME", "t")
    monkeypatch.delenv("BUCKET_NAME", raising=False)
    monkeypatch.setenv("QUEUE_URL", "https://sqs.example/q")  # the processor hands messages back to it
    monkeypatch.setenv("REPLAY_QUEUE_URL", "https://sqs.example/replay")
    require_settings(QUERY_SETTINGS)
    with pytest.raises(SettingsError, match=r"^BUCKET_NAME is not set"):
        require_settings(PROCESSOR_SETTINGS)


@pytest.mark.parametrize("function", sorted(REQUIRED))
def test_each_handler_fails_at_import_without_a_variable_it_needs(
    function: str, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drop each of the function's template variables in turn and import its handler file afresh
    (`runpy`, as the cold start does): exactly the required ones fail the import, by name."""
    info = pipeline.functions[function]
    source = HANDLERS / f"{info.handler.rsplit('.', 1)[0]}.py"
    assert set(REQUIRED[function]) <= set(info.environment), "the template must set what the handler needs"
    failing: set[str] = set()
    for name in sorted(info.environment):
        if name.startswith("POWERTOOLS_"):
            continue  # Powertools' own configuration, not the pipeline's settings
        with monkeypatch.context() as patch:
            for key, value in info.environment.items():
                patch.setenv(key, value)
            patch.delenv(name)
            try:
                runpy.run_path(str(source), run_name=f"settings_check_{function}")
            except SettingsError as error:
                assert str(error).startswith(f"{name} is not set"), error
                failing.add(name)
    assert failing == set(REQUIRED[function])
