"""The changing-load scenarios of ``bench_threads.py`` (``--scenario start|stop``; see its
docstring): a competing CPU-bound process starts or stops at the boundary of two phases, and
htd's default thread policy is compared with 1 thread and with all cores in each phase."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time

COMPETITOR = "while True: pass"  # one busy core, as a second single-threaded job


class Recorder:
    """Stands in for the process's governor: keeps (time, items) of every progress tick and
    passes ticks on to the real governor when there is one (the default setting)."""

    def __init__(self, governor=None) -> None:
        self.governor, self.ticks = governor, []

    def tick(self, items: int = 1, source: str = "work") -> None:
        self.ticks.append((time.perf_counter(), items))
        if self.governor is not None:
            self.governor.tick(items, source)


def continuous(name: str, args):
    """``run(seconds)``: the workload done continuously for ``seconds`` (unit per tick)."""
    if name == "train":
        from bench_threads import _small_model

        backbone, builder, samples, common = _small_model()

        def run(seconds: float) -> None:
            backbone.fit(samples, builder, steps=10**6, max_minutes=seconds / 60, **common)

        return run, "steps/s", "small", 1
    from bench_threads import embed_workload, generate_workload

    once, _, kind = (generate_workload if name == "generate" else embed_workload)(args)

    def run(seconds: float) -> None:  # the steady benchmark's call, repeated
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            once()

    if name == "generate":
        return run, "image-steps/s", kind, args.images
    return run, "patches/s", kind, 1


def one_run(run, mode: str, kind: str, scenario: str, phase: float, per_tick: int):
    """Throughput of each phase and the default's switches (empty for fixed settings)."""
    import torch

    from htd_core import thread_governor
    from htd_core.threads import all_cores, configure_threads

    competitor = None

    def start_competitor():
        nonlocal competitor
        competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR])

    if scenario == "stop":
        start_competitor()
        time.sleep(0.5)  # it is running before the work starts
    t0 = time.perf_counter()
    if mode == "default":
        configure_threads(None, workload=kind, device="cpu")
    else:
        torch.set_num_threads(1 if mode == "1" else all_cores())
        thread_governor.install(None)
    governor = thread_governor.active()
    recorder = Recorder(governor)
    thread_governor.install(recorder)
    boundary = threading.Timer(
        phase - (time.perf_counter() - t0),
        start_competitor if scenario == "start" else lambda: competitor.kill(),
    )
    boundary.start()
    try:
        run(2 * phase - (time.perf_counter() - t0))
    finally:
        boundary.cancel()
        if competitor is not None:
            competitor.kill()
            competitor.wait()
        thread_governor.install(None)
    rates = []
    for lo, hi in ((t0, t0 + phase), (t0 + phase, t0 + 2 * phase)):
        done = sum(items for t, items in recorder.ticks if lo <= t < hi)
        rates.append(done * per_tick / phase)
    switches = [(round(s.at, 1), s.old, s.new) for s in governor.switches] if governor else []
    return rates, switches


def changing_load(args, workloads) -> None:
    """Prints, per workload, each setting's median throughput in each phase and the ratio."""
    for var in ("HTD_THREADS", "OMP_NUM_THREADS"):
        os.environ.pop(var, None)
    from htd_core.threads import all_cores

    print(
        f"scenario {args.scenario}: a busy process {'starts' if args.scenario == 'start' else 'stops'}"
        f" after {args.phase:.0f} s of {2 * args.phase:.0f}; cores {all_cores()}; "
        f"load average (1/5/15 min) {os.getloadavg()}; OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY', '(unset)')}",
        flush=True,
    )
    worst = []
    for name in workloads:
        if args.only and name != args.only:
            continue
        run, unit, kind, per_tick = continuous(name, args)
        run(3.0)  # warm-up: thread pools, allocator, first-call costs
        rates = {m: ([], []) for m in ("1", "all", "default")}
        switches = []
        for r in range(args.rounds):
            order = ["1", "all", "default"]
            for mode in order[r % 3 :] + order[: r % 3]:
                got, sw = one_run(run, mode, kind, args.scenario, args.phase, per_tick)
                for p in (0, 1):
                    rates[mode][p].append(got[p])
                if mode == "default":
                    switches.append(sw)
        for p, label in ((0, "phase 1"), (1, "phase 2")):
            med = {m: statistics.median(v[p]) for m, v in rates.items()}
            ratio = med["default"] / max(med["1"], med["all"], 1e-12)
            worst.append(ratio)
            print(
                f"{name:9s} {label}: 1 thread {med['1']:8.2f}  all {med['all']:8.2f}  default "
                f"{med['default']:8.2f} {unit}  -> default / best = {ratio:.2f}",
                flush=True,
            )
        print(f"{name:9s} default's switches per round (s, from, to): {switches}", flush=True)
    print(f"load average after (1/5/15 min): {os.getloadavg()}")
    print(f"worst default / best ratio: {min(worst):.2f} (target >= 0.8)")
