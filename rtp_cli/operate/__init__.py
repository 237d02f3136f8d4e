"""Operating a deployed pipeline: `rtp send` (smoke test, bulk load), `rtp logs`, `rtp dlq`, `rtp show`.

Each module is a service with explicit parameters (URLs, clients, names), so it can be tested without a
terminal; `commands.py` is the thin Typer layer that resolves the environment and renders the results.
"""
