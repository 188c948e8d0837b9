"""The CPU thread count follows the load during long work.

:func:`htd_core.threads.configure_threads` measures 1 thread against all cores once, when a
command starts. On shared cores the load changes while a command runs (measured on 2 cores:
``make demo`` chose 2 threads on a quiet machine and ran at 2 steps/s; when a single-threaded
process started beside it the same run fell to 6.7 s per step and stayed there). So when the
choice was *measured* (no ``--threads``, ``$HTD_THREADS`` or ``$OMP_NUM_THREADS``, no GPU), a
:class:`ThreadGovernor` watches the work's own throughput and measures again:

- when the throughput of the running work (median time per item over a window of about
  ``check_seconds``) falls below ``drop`` times the best window seen since the last measurement,
  or a single step takes ``spike`` times as long as that best (judged at once);
- when the CPU time used by *other* processes changes by half a core or more since the last
  measurement (Linux ``/proc/stat``, only where it counts the cores this process may use: a
  competing job started or stopped; it sees use, not demand, so a job that stops while another
  takes its core goes unnoticed here);
- at a bounded interval otherwise (30 s, doubling up to 240 s while measurements keep the
  count, back to 30 s after a switch).

The measurement is a probe block, not the work itself; so the first window after a switch is
compared with the last one before it, and a switch that made the work ``margin`` times slower
is undone (and the next measurement waits the longest interval).

The measurement is :func:`htd_core.threads.fastest_thread_count` (about 0.2-2 s); the count
changes only when the other count is at least ``margin`` times faster. Each switch is printed
on stderr and kept in :attr:`ThreadGovernor.switches`. Switching changes the order of
floating-point reductions only: a tiny model trained 12 steps with a switch from 1 to 2 threads
after step 3, 6 or 9 ends at most 1.2e-7 (absolute) from an unswitched run in every weight; the
test allows 1e-5 (``tests/htd_core/test_thread_governor.py``).

Loops report progress with :func:`tick` (training steps, denoising steps, embedded patches,
segmentation steps); it does nothing when no governor is installed.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: The one governor of this process (None: the thread count was set explicitly).
_ACTIVE: ThreadGovernor | None = None


@dataclass(frozen=True)
class ThreadSwitch:
    """One change of the thread count: when (s since the governor started), from, to, why."""

    at: float
    old: int
    new: int
    reason: str


@dataclass
class _Window:
    durations: list[float] = field(default_factory=list)  # seconds per item, one per tick
    seconds: float = 0.0


class ThreadGovernor:
    """Re-measures the thread count when the load changes (module docstring).

    Args:
        threads: the count set now.
        counts: the counts to choose between (1 and all cores).
        check_seconds: length of a throughput window, seconds of work.
        spike: one tick this many times slower than the best window is judged at once (a
            step of a model on 2 threads takes 10x longer when another process starts).
        drop: a window below ``drop`` x the best one since the last measurement re-measures.
        margin: the other count must be this many times faster to switch.
        interval: (first, longest) seconds between measurements when nothing else triggers one.
        probe: ``probe()`` -> (faster count, {count: seconds}), e.g.
            :func:`htd_core.threads.fastest_thread_count` on the work's size.
        set_threads: applies a count (default ``torch.set_num_threads``).
        others_busy: ``others_busy()`` -> cores used by other processes since the last call,
            or None where unknown (default: :func:`other_processes_busy`).
        clock: seconds, monotonic.
        log: receives one line per switch (default: stderr).
    """

    def __init__(
        self,
        threads: int,
        counts: tuple[int, ...],
        probe: Callable[[], tuple[int, dict[int, float]]],
        *,
        check_seconds: float = 3.0,
        spike: float = 3.0,
        drop: float = 0.6,
        margin: float = 1.15,
        interval: tuple[float, float] = (30.0, 240.0),
        set_threads: Callable[[int], None] | None = None,
        others_busy: Callable[[], float | None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.threads, self.counts = threads, tuple(sorted(set(counts)))
        self.check_seconds, self.drop, self.margin = check_seconds, drop, margin
        self.spike = spike
        self.interval_range = interval
        self._probe = probe
        self._set = set_threads or _torch_set_threads
        self._others = others_busy if others_busy is not None else OtherProcesses()
        self._clock, self._log = clock, log or _stderr_line
        self.switches: list[ThreadSwitch] = []
        self.measurements = 0
        self._start = clock()
        self._source: str | None = None
        self._last: float | None = None
        self._window = _Window()
        self._rates: list[float] = []  # window rates since the last measurement
        self._interval = interval[0]
        self._measured_at = self._start
        self._verify: tuple[int, float] | None = None  # (count before a switch, its rate)
        self._others_ref = self._others()

    def tick(self, items: int = 1, source: str = "work") -> None:
        """Report that ``items`` units of ``source`` (e.g. ``train``) finished just now.

        The first tick of a new ``source`` only starts its clock (its time holds set-up).
        """
        now = self._clock()
        if source != self._source or self._last is None:
            self._source, self._last = source, now
            self._window, self._rates = _Window(), []
            return
        seconds, self._last = now - self._last, now
        per_item = seconds / max(items, 1)
        if self._rates and per_item * max(self._rates) > self.spike:  # one very slow step:
            self._window = _Window([per_item], seconds)  # judge it now, alone
            self._check(now)
            return
        self._window.durations.append(per_item)
        self._window.seconds += seconds
        if self._window.seconds >= self.check_seconds:
            self._check(now)

    def _check(self, now: float) -> None:
        rate = 1.0 / max(statistics.median(self._window.durations), 1e-12)
        self._window = _Window()
        if self._verify is not None:  # the first window after a switch: did it pay?
            old, before = self._verify
            self._verify = None
            if rate * self.margin < before:
                self.switch(old, f"{rate:.3g} items/s after the switch, {before:.3g} before")
                self._interval = self.interval_range[1]
                self._after_measurement()
                return
        best = max(self._rates, default=rate)
        self._rates.append(rate)
        others = self._others()
        if self._others_ref is None:  # the first reading: a reference, nothing to compare
            self._others_ref = others
        if rate < self.drop * best:
            reason = f"throughput fell to {rate / best:.2f} of its best"
        elif (
            others is not None
            and self._others_ref is not None
            and (abs(others - self._others_ref) >= 0.5)
        ):
            reason = f"other processes use {others:.1f} cores, were {self._others_ref:.1f}"
        elif now - self._measured_at >= self._interval:
            reason = f"{self._interval:.0f} s since the last measurement"
        else:
            return
        self.measure(reason)

    def measure(self, reason: str) -> int:
        """Measure the counts now and switch when the other is ``margin`` x faster.

        Returns:
            The count set after the measurement.
        """
        self.measurements += 1
        fastest, timings = self._probe()
        self._set(self.threads)  # the probe restores torch's count; keep ours for certain
        current = timings.get(self.threads)
        if fastest != self.threads and current and timings.get(fastest):
            speedup = current / max(timings[fastest], 1e-12)
            if speedup >= self.margin:
                self._verify = (self.threads, self._rates[-1]) if self._rates else None
                unit = "thread" if fastest == 1 else "threads"
                self.switch(
                    fastest,
                    f"{reason}; {fastest} {unit} measured {speedup:.1f}x faster than {self.threads}",
                )
                self._interval = self.interval_range[0]
                self._after_measurement()
                return self.threads
        self._interval = min(self._interval * 2, self.interval_range[1])
        self._after_measurement()
        return self.threads

    def _after_measurement(self) -> None:
        self._measured_at = self._clock()
        self._rates = []
        self._last = self._measured_at  # the measurement's own time is not the work's
        self._others_ref = self._others()

    def switch(self, threads: int, reason: str) -> None:
        """Set ``threads`` now, record and print the switch."""
        old, self.threads = self.threads, threads
        self._set(threads)
        self.switches.append(ThreadSwitch(self._clock() - self._start, old, threads, reason))
        unit = "thread" if threads == 1 else "threads"
        self._log(f"htd: now {threads} CPU {unit}, was {old} ({reason})")


class OtherProcesses:
    """Cores used by other processes since the previous call, from ``/proc/stat``.

    Returns None (unknown) off Linux, on the first call, and where ``/proc/stat`` counts more
    CPUs than this process may use (a container on a larger host: the host's load says nothing
    about ours).
    """

    def __init__(self) -> None:
        self._previous: tuple[float, float, float] | None = None
        self._usable = _cpu_matches()

    def __call__(self) -> float | None:
        if not self._usable:
            return None
        try:
            with open("/proc/stat") as fh:
                fields = [float(v) for v in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        busy = (sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0.0)) / tick
        times = os.times()
        now = (time.monotonic(), busy, times.user + times.system)
        previous, self._previous = self._previous, now
        if previous is None or now[0] - previous[0] <= 0:
            return None
        return max(0.0, (now[1] - previous[1] - (now[2] - previous[2])) / (now[0] - previous[0]))


def _cpu_matches() -> bool:
    try:
        with open("/proc/stat") as fh:
            cpus = sum(1 for line in fh if line[:3] == "cpu" and line[3:4].isdigit())
        return cpus == len(os.sched_getaffinity(0))
    except (OSError, AttributeError):
        return False


def _torch_set_threads(count: int) -> None:
    import torch

    torch.set_num_threads(count)


def _stderr_line(line: str) -> None:
    if "tqdm" in sys.modules:  # keep progress bars whole
        sys.modules["tqdm"].tqdm.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


def install(governor: ThreadGovernor | None) -> None:
    """Make ``governor`` the process's governor (None: the count stays as set)."""
    global _ACTIVE
    _ACTIVE = governor


def active() -> ThreadGovernor | None:
    """The installed governor, or None."""
    return _ACTIVE


def tick(items: int = 1, source: str = "work") -> None:
    """:meth:`ThreadGovernor.tick` on the installed governor; nothing when none is."""
    if _ACTIVE is not None:
        _ACTIVE.tick(items, source)
