"""The checkout `rtp` runs from: the one definition of PROJECT_ROOT (config/, cdk.json, node_modules/,
.rtp/ state and caches are found from it)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
