"""Test-suite settings: offline hubs, one torch thread."""

from __future__ import annotations

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The tests run tiny models made of many small ops: one thread avoids OpenMP overhead, which on
# 2 shared cores cost 10-40x the CPU time of the same test single-threaded.
torch.set_num_threads(1)
