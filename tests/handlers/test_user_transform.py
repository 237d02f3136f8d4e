"""Replacing `handlers/transform.py` wholesale: a user's own file that imports only the contract module
(`rtp_pipeline.contract`) runs under the real processor handler, against moto.

The asset is copied to a temporary directory, its `transform.py` overwritten, and the handler modules are
imported from the copy (as Lambda imports them from the asset root), so nothing of the default transform
can leak in: the copy's `transform.py` is the only one on the import path for the test's duration.
"""

from __future__ import annotations

import ast
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.handlers.harness import Pipeline

HANDLERS = Path(__file__).resolve().parents[2] / "handlers"

USER_TRANSFORM = '''"""My business logic: shout the customer's name, refuse refunds."""

from typing import Any

from rtp_pipeline import contract


def transform(record: dict[str, Any], context: contract.TransformContext) -> dict[str, Any]:
    if record["type"] == "refund":
        raise contract.RejectRecord("refunds are handled by another system")
    return {"name": str(record["data"]["name"]).upper(), "record": context.record_id}
'''


def _asset_modules() -> dict[str, Any]:
    """Modules loaded from the Lambda asset root (handlers/): the handlers, `transform`, `rtp_pipeline`."""
    root = str(HANDLERS) + "/"
    return {
        name: module
        for name, module in list(sys.modules.items())
        if str(getattr(module, "__file__", "") or "").startswith(root)
    }


@contextmanager
def asset_with_transform(tmp_path: Path, source: str) -> Iterator[Path]:
    """A copy of the Lambda asset whose `transform.py` is `source`, first on the import path; the asset's
    modules already imported are set aside for the block and put back after it."""
    asset = tmp_path / "asset"
    shutil.copytree(HANDLERS, asset, ignore=shutil.ignore_patterns("__pycache__"))
    (asset / "transform.py").write_text(source, encoding="utf-8")
    saved = _asset_modules()
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(asset))
    try:
        yield asset
    finally:
        sys.path.remove(str(asset))
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", "") or "").startswith(str(asset) + "/"):
                del sys.modules[name]
        sys.modules.update(saved)


def test_a_transform_of_your_own_replaces_the_default(pipeline: Pipeline, tmp_path: Path) -> None:
    with asset_with_transform(tmp_path, USER_TRANSFORM) as asset:
        processor = pipeline.module("processor")
        assert Path(processor.transform.__file__) == asset / "transform.py"  # the user's file, not ours
        response = pipeline.post_records(
            {
                "records": [
                    {"id": "o-1", "type": "order", "data": {"name": "Ada"}},
                    {"id": "r-1", "type": "refund", "data": {"name": "Bob"}},
                    {"id": "o-2", "type": "order", "data": {"name": "Grace Hopper"}},
                ]
            }
        )
        assert response.status == 202, response.body
        [delivery] = pipeline.drain()
        assert delivery.failures == [] and delivery.raised is None
        stored = {record_id: pipeline.get_record(record_id).body for record_id in ("o-1", "r-1", "o-2")}

    assert stored["o-1"] is not None and stored["o-2"] is not None and stored["r-1"] is not None
    assert stored["o-1"]["status"] == "PROCESSED"
    assert stored["o-1"]["result"] == {"name": "ADA", "record": "o-1"}
    assert stored["o-2"]["result"] == {"name": "GRACE HOPPER", "record": "o-2"}
    assert stored["r-1"]["status"] == "REJECTED"
    assert stored["r-1"]["reason"] == "refunds are handled by another system"
    leftovers = [
        name for name, module in sys.modules.items() if str(asset) in str(getattr(module, "__file__", ""))
    ]
    assert not leftovers  # the copy's modules are gone, the asset's own are back


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_only_the_processor_handler_imports_the_transform() -> None:
    """The domain, the other handlers, the CLI and the benchmarks depend on the contract module, never on
    `transform.py` (the file a user replaces): only the processor's handler picks the function up."""
    root = HANDLERS.parent
    sources = [*HANDLERS.rglob("*.py"), *(root / "rtp_cli").rglob("*.py"), *(root / "bench").rglob("*.py")]
    importers = sorted(
        str(path.relative_to(root)) for path in sources if "transform" in _imported_modules(path)
    )
    assert importers == ["handlers/queue_processor.py"]
    assert "rtp_pipeline.contract" in _imported_modules(HANDLERS / "rtp_pipeline" / "processing.py")
