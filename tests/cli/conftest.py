"""Fixtures the CLI tests share: a state directory of their own, a fake CDK, a signed-in identity."""

from __future__ import annotations

from pathlib import Path

import pytest

import rtp_cli.app as cli
from rtp_cli import console
from rtp_cli.cdk import Identity
from tests.cli.fakes import FakeCdk


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads or writes the user's .rtp state, or follows their RTP_* settings; rich renders wide."""
    monkeypatch.setenv("RTP_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("COLUMNS", "200")
    # rich fixes a console's width when it is made if COLUMNS is set then (a pytest-xdist worker has
    # COLUMNS=80 at import): the CLI's module-level consoles get the width here, not from the import.
    # (`_width` is what rich's `width` setter sets; patched directly so teardown restores it exactly.)
    for shared in (console.console, console.err):
        monkeypatch.setattr(shared, "_width", 200)
    monkeypatch.delenv("RTP_ENV", raising=False)
    monkeypatch.delenv("RTP_LOCAL_TRANSFORM", raising=False)


@pytest.fixture
def fake_cdk(monkeypatch: pytest.MonkeyPatch) -> FakeCdk:
    fake = FakeCdk()
    monkeypatch.setattr(cli, "run_cdk", fake)
    return fake


@pytest.fixture
def signed_in(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str | None, str | None]]:
    """AWS credentials resolve to an identity (no STS call); returns the (profile, region) of each lookup."""
    seen: list[tuple[str | None, str | None]] = []

    def identity(profile: str | None, region: str | None) -> Identity:
        seen.append((profile, region))
        return Identity("111122223333", "arn:aws:iam::111122223333:user/ci")

    monkeypatch.setattr(cli, "get_identity", identity)
    return seen
