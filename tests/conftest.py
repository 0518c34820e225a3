"""Test-session settings."""

from __future__ import annotations

import os

import torch

# Under pytest-xdist each worker gets its share of the cores, so workers do not oversubscribe
# the machine (torch would otherwise start one thread per core in every worker).
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _workers))
