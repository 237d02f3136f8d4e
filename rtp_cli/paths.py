"""The project `rtp` works on: the one definition of PROJECT_ROOT (config/, cdk.json, node_modules/,
.rtp/ state and caches are found from it). A checkout, or for an installed rtp the working directory's
project (`stack.project`, which the CDK app shares)."""

from __future__ import annotations

from stack.project import PROJECT_ROOT

__all__ = ["PROJECT_ROOT"]
