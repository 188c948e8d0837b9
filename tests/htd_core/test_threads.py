"""The one CPU thread policy of the heavy commands."""

from __future__ import annotations

import argparse

import pytest
import torch

from htd_core import threads
from htd_core.errors import InputError


@pytest.fixture(autouse=True)
def _keep_threads(monkeypatch):
    before = torch.get_num_threads()
    for var in ("HTD_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    yield
    torch.set_num_threads(before)


def test_explicit_then_environment(monkeypatch):
    assert threads.configure_threads(1).threads == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("HTD_THREADS", "1")
    choice = threads.configure_threads(None)
    assert choice.threads == 1 and "HTD_THREADS" in choice.reason
    monkeypatch.setenv("HTD_THREADS", "two")
    with pytest.raises(InputError, match="HTD_THREADS"):
        threads.configure_threads(None)
    with pytest.raises(InputError, match="--threads 0"):
        threads.configure_threads(0)


def test_omp_setting_is_kept(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    assert threads.configure_threads(None, device="cpu").reason == "set by $OMP_NUM_THREADS"


def test_measurement_picks_one_or_all_cores(monkeypatch):
    monkeypatch.setattr(threads, "all_cores", lambda: 2)
    best, timings = threads.fastest_thread_count("small")
    assert best in (1, 2) and set(timings) == {1, 2} and all(t > 0 for t in timings.values())
    choice = threads.configure_threads(None, workload="small", device="cpu")
    assert choice.threads == torch.get_num_threads() and "measured" in choice.reason
    with pytest.raises(InputError, match="workload"):
        threads.fastest_thread_count("huge")


def test_totals_not_minima_decide(monkeypatch):
    """One fast all-cores call among slow ones must not win (the old demo probe's mistake)."""
    monkeypatch.setattr(threads, "all_cores", lambda: 2)
    calls = {"n": 0}
    clock = {"t": 0.0}
    # per measurement: a warm-up call, then 3 timed calls. All cores: its first measurement is
    # the fastest of all (0.9 s against 3 s), every later one slow (30 s): the best case lies
    costs = {1: [1.0] * 99, 2: [0.0, 0.3, 0.3, 0.3] + [10.0] * 95}

    def fake_perf_counter():
        return clock["t"]

    real_set = torch.set_num_threads

    def fake_set(n):
        calls["n"] = n
        real_set(1)

    class Block:
        def __call__(self, x):
            clock["t"] += costs[calls["n"]].pop(0) if calls["n"] in costs else 0.0

    monkeypatch.setattr(threads.time, "perf_counter", fake_perf_counter)
    monkeypatch.setattr(threads.torch, "set_num_threads", fake_set)
    monkeypatch.setattr(threads.torch.nn, "Sequential", lambda *a: Block())
    assert threads.fastest_thread_count("small")[0] == 1


def test_every_heavy_command_takes_threads():
    from htd_core.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for verb in ("train", "train-vae", "generate", "evaluate", "demo"):
        assert "--threads" in sub.choices[verb].format_help(), verb
    stages = next(
        a for a in sub.choices["discover"]._actions if isinstance(a, argparse._SubParsersAction)
    )
    for stage, p in stages.choices.items():
        assert "--threads" in p.format_help(), stage
    assert "torch's choice" not in sub.choices["demo"].format_help()
