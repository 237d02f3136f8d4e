"""Synthesize an environment, reusing a cached cloud assembly when nothing that shapes it has changed.

A synth costs ~10 s of jsii/Node start-up. The key covers everything that determines the template and
its assets: the environment's YAML, every file under `stack/` and `handlers/`, `main.py`, and the
installed versions of aws-cdk-lib, constructs and cdk-nag. Only clean synths (no cdk-nag findings) are
cached, so the gate still runs whenever the inputs change.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from rtp_cli.paths import PROJECT_ROOT
from stack.config import CONFIG_DIR, load_config

CACHE_ROOT = PROJECT_ROOT / ".rtp" / "synth-cache"
KEEP = 8


@dataclass
class CachedSynth:
    template_path: Path
    stack_name: str
    cached: bool
    findings: list[object]


def cache_key(env_name: str, config_dir: Path = CONFIG_DIR) -> str:
    digest = hashlib.sha256()
    digest.update(env_name.encode())
    inputs = [config_dir / f"{env_name}.yaml", PROJECT_ROOT / "main.py"]
    for folder in ("stack", "handlers"):
        inputs.extend(
            p
            for p in sorted((PROJECT_ROOT / folder).rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts
        )
    for path in inputs:
        digest.update(
            str(path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path).encode()
        )
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    for package in ("aws-cdk-lib", "constructs", "cdk-nag"):
        try:
            digest.update(f"{package}=={metadata.version(package)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package}==none".encode())
    return digest.hexdigest()[:24]


def _cache_entry(env_name: str, stack_name: str, cache_root: Path) -> tuple[Path, Path]:
    """(the cache directory for the environment's current inputs, the template inside it)."""
    target = cache_root / f"{env_name}-{cache_key(env_name)}"
    return target, target / f"{stack_name}.template.json"


def cached_template(env_name: str, cache_root: Path = CACHE_ROOT) -> Path | None:
    """The cached template for the environment's current inputs, or None. Never synthesizes (no CDK)."""
    _, template = _cache_entry(env_name, load_config(env_name).stack_name, cache_root)
    return template if template.is_file() else None


def synthesize_cached(env_name: str, cache_root: Path = CACHE_ROOT, use_cache: bool = True) -> CachedSynth:
    config = load_config(env_name)  # ConfigError for a bad file, before any slow work
    target, template = _cache_entry(env_name, config.stack_name, cache_root)
    if use_cache and template.is_file():
        return CachedSynth(template, config.stack_name, True, [])
    from stack.synth import synthesize  # imports aws_cdk (slow): only on a cache miss

    cache_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{env_name}-", dir=cache_root))
    result = synthesize(env_name, work, config)
    if result.findings:
        return CachedSynth(result.template_path, config.stack_name, False, list(result.findings))
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        work.rename(target)
    except OSError:  # a concurrent run won the race; use its copy
        shutil.rmtree(work, ignore_errors=True)
    _prune(cache_root)
    return CachedSynth(template, config.stack_name, False, [])


def _prune(cache_root: Path) -> None:
    entries = sorted(
        (p for p in cache_root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for stale in entries[KEEP:]:
        shutil.rmtree(stale, ignore_errors=True)


if __name__ == "__main__":
    # `python -m rtp_cli.synthcache ENV...`: fill the cache in a child process, so the caller (the fast
    # test tier) never loads jsii/Node itself. Prints each template path; exit 1 on cdk-nag findings.
    import sys

    for name in sys.argv[1:]:
        result = synthesize_cached(name)
        if result.findings:
            sys.exit(f"{name}: {len(result.findings)} cdk-nag finding(s): run `rtp synth --env {name}`")
        print(result.template_path)
