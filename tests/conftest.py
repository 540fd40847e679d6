"""Shared test setup: small CPU problems run fastest (and most repeatably) on one thread."""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import torch  # noqa: E402

torch.set_num_threads(1)

# fixtures that start real servers (a PostgreSQL cluster, a two-node Ray cluster) for the
# tests that need them; each skips with its reason where the binaries are missing
pytest_plugins = ["pg_server", "ray_cluster"]
