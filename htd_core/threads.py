"""The one CPU thread policy of htd's heavy commands (train, train-vae, generate, evaluate,
discover, demo).

PyTorch uses one intra-op thread per physical core by default. The models htd runs on a CPU
(the ``tiny`` and ``small`` presets, the FID Inception, small ViTs) issue many small operations;
on cores shared with other work OpenMP threads wait for each other at every operation, and one
thread can be several times faster than all of them (measured: ``htd train`` on ``tiny``, 9.6
vs 0.86 steps/s on 2 loaded cores). On a quiet machine all cores win for large operations. So
the policy *measures*: it times a probe block (convolution, group norm, SiLU, convolution) of
the workload's size with 1 thread and with all cores (interleaved, total time of each, about
0.2-2 s) and keeps the faster. The choice is made once, when a command starts.

Precedence: an explicit count (``--threads N``), then ``$HTD_THREADS``, then
``$OMP_NUM_THREADS`` (torch already read it: kept as is), then a CUDA device (the CPU only
prepares data: torch's default is kept), then the measurement. A measured choice is not final:
:mod:`htd_core.thread_governor` measures again while the work runs when the load changes.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import torch

from htd_core.errors import InputError

ENV_VAR = "HTD_THREADS"
#: Probe block per workload: (batch, channels, side). ``small``: the ``tiny`` / ``small``
#: diffusion presets (32-96 channels on 8-64 px grids); ``large``: ImageNet-size encoders and
#: segmentation models (64+ channels on 56-150 px grids).
WORKLOADS: dict[str, tuple[int, int, int]] = {"small": (8, 32, 32), "large": (2, 64, 64)}
#: Interleaved (1 thread, all cores) timing pairs of the measurement. Totals are compared, not
#: minima: under fluctuating load the best case of all cores looks fine while its typical
#: case is many times slower (measured on 2 loaded cores: min ratio 1.0-1.9, total 3-11).
PAIRS = 4
#: torch's thread count when htd first looked (its default: the physical cores).
_STARTUP_THREADS = torch.get_num_threads()


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count set and why (``reason`` is one line for the terminal)."""

    threads: int
    reason: str


def all_cores() -> int:
    """The cores this process may use: torch's default, capped by the CPU affinity."""
    try:
        visible = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        visible = os.cpu_count() or 1
    return max(1, min(_STARTUP_THREADS, visible))


def fastest_thread_count(workload: str = "small") -> tuple[int, dict[int, float]]:
    """1 or :func:`all_cores`, whichever runs the workload's probe block faster now.

    Returns:
        The faster count and the total time in seconds of each count tried (alternating
        pairs of 3 calls each; stops after 1 pair when one count is over 6x slower, after 2
        when over 3x).

    Raises:
        InputError: an unknown ``workload``.
    """
    if workload not in WORKLOADS:
        raise InputError(f"thread workload {workload!r}: use one of {sorted(WORKLOADS)}")
    cores = all_cores()
    if cores <= 1:
        return 1, {1: 0.0}
    batch, channels, side = WORKLOADS[workload]
    previous = torch.get_num_threads()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, side, side, generator=gen)
    block = torch.nn.Sequential(  # a UNet / ResNet stage in miniature: many mid-size ops
        torch.nn.Conv2d(channels, channels, 3, padding=1),
        torch.nn.GroupNorm(8, channels),
        torch.nn.SiLU(),
        torch.nn.Conv2d(channels, channels, 3, padding=1),
    )
    timings = {1: 0.0, cores: 0.0}
    try:
        with torch.inference_mode():
            for pair in range(PAIRS):
                for n in (1, cores) if pair % 2 == 0 else (cores, 1):
                    torch.set_num_threads(n)
                    block(x)  # warm-up: thread pool start, allocator
                    start = time.perf_counter()
                    for _ in range(3):
                        block(x)
                    timings[n] += time.perf_counter() - start
                slow, fast = max(timings.values()), min(timings.values())
                if slow > (3 if pair >= 1 else 6) * fast:  # clear already: stop early
                    break
    finally:
        torch.set_num_threads(previous)
    return min(timings, key=timings.get), timings


def configure_threads(
    requested: int | None = None, *, workload: str = "small", device: str | None = None
) -> ThreadChoice:
    """Set torch's intra-op thread count for this process by the policy above.

    Args:
        requested: an explicit count (``--threads``); None applies the policy.
        workload: ``small`` or ``large`` (:data:`WORKLOADS`), the size of the model's operations.
        device: the torch device the command will use (``cuda...`` keeps torch's default).

    Returns:
        The count set and the reason, e.g.
        ``ThreadChoice(1, "measured: 1 thread 3.1x faster than 2")``.

    Raises:
        InputError: ``requested`` or ``$HTD_THREADS`` is not a positive integer.
    """
    if requested is None and os.environ.get(ENV_VAR, "").strip():
        text = os.environ[ENV_VAR].strip()
        if not text.isdigit():
            raise InputError(f"{ENV_VAR}={text!r}: give a positive number of threads")
        requested, source = int(text), f"${ENV_VAR}"
    else:
        source = "--threads"
    from htd_core import thread_governor

    thread_governor.install(None)
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise InputError(f"{source} {requested!r}: give a positive number of threads")
        torch.set_num_threads(requested)
        _set_opencv_threads(requested)
        return ThreadChoice(requested, f"set by {source}")
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return ThreadChoice(torch.get_num_threads(), "set by $OMP_NUM_THREADS")
    wants_cuda = str(device or "").startswith("cuda") or (
        device in (None, "auto") and torch.cuda.is_available()
    )
    if wants_cuda:
        torch.set_num_threads(all_cores())
        return ThreadChoice(all_cores(), "torch's default (models run on the GPU)")
    best, timings = fastest_thread_count(workload)
    torch.set_num_threads(best)
    if len(timings) < 2:
        return ThreadChoice(best, "one core available")
    thread_governor.install(
        thread_governor.ThreadGovernor(best, tuple(timings), lambda: fastest_thread_count(workload))
    )
    other = max(timings, key=timings.get)
    ratio = timings[other] / max(timings[best], 1e-9)
    unit = "thread" if best == 1 else "threads"
    return ThreadChoice(
        best,
        f"measured: {best} {unit} {ratio:.1f}x faster than {other}; measured again when the "
        "load changes",
    )


def explicit_threads(requested: int | None = None) -> ThreadChoice:
    """The thread policy of commands that run no model (``htd sample``: slide reading, tissue
    masks and painting in OpenCV): an explicit count (``--threads``, ``$HTD_THREADS``) is set
    for torch and OpenCV; otherwise the libraries' defaults stay (nothing to measure).

    Raises:
        InputError: ``requested`` or ``$HTD_THREADS`` is not a positive integer.
    """
    if requested is None and not os.environ.get(ENV_VAR, "").strip():
        return ThreadChoice(torch.get_num_threads(), "the libraries' default")
    return configure_threads(requested)


def _set_opencv_threads(count: int) -> None:
    """OpenCV's own thread pool (tiatoolbox's tissue masks, annotation painting), if present."""
    try:
        import cv2
    except ImportError:  # pragma: no cover - OpenCV comes with tiatoolbox
        return
    cv2.setNumThreads(count)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--threads`` option every heavy command shares (help text names the policy)."""
    from htd_core.options import int_at_least

    parser.add_argument(
        "--threads",
        type=int_at_least(1),
        help=f"torch CPU threads (default: ${ENV_VAR}, else 1 or all {all_cores()} cores, "
        "whichever a quick measurement finds faster, measured again when the load changes)",
    )


def report(command: str, choice: ThreadChoice) -> str:
    """The line a command prints (on stderr) about its choice."""
    unit = "thread" if choice.threads == 1 else "threads"
    return f"htd {command}: {choice.threads} CPU {unit} ({choice.reason}; --threads N to force)"


def check_device(device: str | None, what: str = "--device") -> str | None:
    """``device`` when this machine has it (``auto`` and None pass); else one InputError line
    naming it and the fix, before any work (a CUDA device where torch sees none, or a string
    torch does not read as a device)."""
    if device in (None, "auto"):
        return device
    import torch

    from htd_core.errors import InputError

    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise InputError(
            f"{what} {device!r} is not a torch device: use cpu, cuda or cuda:N"
        ) from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{what} {device}: no CUDA device on this machine; use {what} cpu")
    if kind == "cuda" and torch.device(device).index is not None:
        count = torch.cuda.device_count()
        if torch.device(device).index >= count:
            raise InputError(f"{what} {device}: this machine has {count} CUDA device(s)")
    return device
