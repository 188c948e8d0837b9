"""Test-suite settings: offline hubs, one torch thread."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The tests run tiny models made of many small ops: one thread avoids OpenMP overhead, which on
# 2 shared cores cost 10-40x the CPU time of the same test single-threaded.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread_no_governor():
    """A command run in-process may measure its thread count and install a governor that
    re-measures while later tests run: each test ends with one thread and none installed."""
    yield
    from htd_core import thread_governor

    thread_governor.install(None)
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
