"""The thread count follows the load: triggers, switches, logging, and results of a switched run."""

from __future__ import annotations

import pytest
import torch

from htd_core import thread_governor, threads
from htd_core.thread_governor import ThreadGovernor


class Clock:
    """Seconds advanced by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def governor(clock, fastest=1, others=None, **options):
    """A governor on 2 counts whose probe always finds ``fastest`` 3x faster."""
    calls, lines, applied = [], [], []

    def probe():
        calls.append(clock())
        return fastest, {fastest: 1.0, 3 - fastest: 3.0}

    gov = ThreadGovernor(
        2, (1, 2), probe=probe, set_threads=applied.append, clock=clock, log=lines.append,
        others_busy=others or (lambda: None), **options,
    )  # fmt: skip
    return gov, calls, lines, applied


def run(gov, clock, seconds_per_step, steps, source="train"):
    for _ in range(steps):
        clock.now += seconds_per_step
        gov.tick(1, source)


def test_a_throughput_drop_measures_and_switches():
    clock = Clock()
    gov, calls, lines, applied = governor(clock, fastest=1)
    run(gov, clock, 0.5, 20)  # 10 s at a steady rate: no measurement before 30 s
    assert calls == [] and gov.threads == 2
    run(gov, clock, 4.0, 1)  # 8x slower: the window falls below 0.6 of the best
    assert len(calls) == 1 and gov.threads == 1 and applied[-1] == 1
    assert gov.switches[0].old == 2 and gov.switches[0].new == 1
    assert gov.switches[0].reason == (
        "throughput fell to 0.12 of its best; 1 thread measured 3.0x faster than 2"
    )
    assert lines == ["htd: now 1 CPU thread, was 2 (" + gov.switches[0].reason + ")"]


def test_measurements_that_keep_the_count_back_off():
    clock = Clock()
    gov, calls, lines, _ = governor(clock, fastest=2)
    run(gov, clock, 1.0, 500)  # steady: periodic measurements at 30, then +60, +120, +240 s
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert gov.threads == 2 and lines == [] and gov.switches == []
    assert len(calls) == 4 and gaps[:3] == pytest.approx([60, 120, 240], abs=3.5)


def test_other_processes_changing_trigger_a_measurement():
    clock, busy = Clock(), [None, 0.0]  # the first reading is unknown (no interval yet)
    gov, calls, _, _ = governor(
        clock, fastest=1, others=lambda: busy.pop(0) if len(busy) > 1 else busy[0]
    )
    run(gov, clock, 0.5, 10)
    assert calls == []
    busy[:] = [1.0]  # a competing single-threaded job started
    run(gov, clock, 0.5, 6)
    assert len(calls) == 1 and gov.threads == 1
    assert "other processes use 1.0 cores, were 0.0" in gov.switches[0].reason


def test_no_switch_inside_the_margin_and_a_new_source_starts_afresh():
    clock = Clock()
    gov, calls, _, _ = governor(clock, fastest=1, margin=4.0)  # 3x faster is not enough
    run(gov, clock, 0.5, 10)
    run(gov, clock, 5.0, 2)
    assert len(calls) == 1 and gov.threads == 2
    run(gov, clock, 0.5, 4, source="generate")  # another kind of work: its own best
    run(gov, clock, 0.6, 4, source="generate")
    assert len(calls) == 1


def test_tick_without_governor_does_nothing_and_explicit_counts_remove_it(monkeypatch):
    thread_governor.install(None)
    thread_governor.tick(3, "train")
    clock = Clock()
    thread_governor.install(governor(clock)[0])
    monkeypatch.setenv("HTD_THREADS", "1")
    threads.configure_threads(None)
    assert thread_governor.active() is None


def test_a_measured_choice_installs_a_governor(monkeypatch):
    for var in ("HTD_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(threads, "all_cores", lambda: 2)
    choice = threads.configure_threads(None, device="cpu")
    gov = thread_governor.active()
    assert gov is not None and gov.threads == choice.threads and gov.counts == (1, 2)
    assert "measured again when the load changes" in choice.reason


def _fit(switch_at: int | None):
    """Denoiser weights of a tiny controlnet_ldm trained 12 steps on 1 thread, switched to 2
    threads after ``switch_at`` steps (None: never)."""
    from htd_core.testing import synthetic_sample
    from htd_plugins.backbones.controlnet_ldm import ControlNetLDM
    from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder

    torch.set_num_threads(1)
    steps = [0]

    def clock():  # one second per training step: the periodic measurement comes at switch_at
        return float(steps[0])

    gov = ThreadGovernor(
        1, (1, 2), check_seconds=1.0, interval=(switch_at or 10**6, 10**6),
        probe=lambda: (2, {1: 2.0, 2: 1.0}), others_busy=lambda: None, clock=clock,
        log=lambda line: None,
    )  # fmt: skip
    thread_governor.install(gov)

    def count(step, loss, denoiser):
        steps[0] = step

    backbone = ControlNetLDM(preset="tiny")
    samples = [synthetic_sample(16, seed=s) for s in range(4)]
    backbone.fit(
        samples, SemanticMapBuilder(), steps=12, vae_steps=2, batch_size=2, progress=False,
        tensorboard=False, callbacks=[count],
    )  # fmt: skip
    thread_governor.install(None)
    torch.set_num_threads(1)
    return gov, {k: v.detach().clone() for k, v in backbone.denoiser.state_dict().items()}


def test_a_switched_run_ends_within_tolerance_of_an_unswitched_one():
    switched, after = _fit(switch_at=6)
    unswitched, before = _fit(switch_at=None)
    assert [(s.old, s.new) for s in switched.switches] == [(1, 2)] and not unswitched.switches
    worst = max(float((after[k] - before[k]).abs().max()) for k in before)
    assert worst <= 1e-5, worst  # reduction order only (measured 1.2e-7)


def test_a_switch_that_slows_the_work_is_undone():
    clock = Clock()
    gov, calls, lines, applied = governor(clock, fastest=1)
    run(gov, clock, 0.5, 20)
    run(gov, clock, 4.0, 1)  # the drop: the probe says 1 thread
    assert gov.threads == 1
    run(gov, clock, 8.0, 1)  # ... but the work runs slower still on 1 thread
    assert gov.threads == 2 and [(s.old, s.new) for s in gov.switches] == [(2, 1), (1, 2)]
    assert "0.125 items/s after the switch, 0.25 before" in lines[-1]
    run(gov, clock, 0.5, 30)  # back to the old pace: the next measurement waits 240 s
    assert len(calls) == 1


def test_one_very_slow_step_is_judged_at_once():
    clock = Clock()
    gov, calls, _, _ = governor(clock, fastest=1)
    run(gov, clock, 0.25, 30)  # windows of 12 steps at 4 steps/s
    run(gov, clock, 0.25, 4)  # a window part-filled with fast steps ...
    run(gov, clock, 1.0, 1)  # ... then one step 4x slower: measured now, not after the window
    assert len(calls) == 1 and gov.threads == 1
    assert gov.switches[0].reason.startswith("throughput fell to 0.25 of its best")
