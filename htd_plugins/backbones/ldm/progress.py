"""Wall-time budgets (:class:`Clock`) and the progress bars of training stages that stop at a
step count or a wall-time bound (:class:`BoundedProgress`)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


class BoundedProgress:
    """A tqdm bar for a stage that ends at ``steps`` or when ``clock`` is spent, whichever
    comes first, so its percentage and ETA count down to the bound that will stop the job.

    Without a time bound it is a plain step bar (``755/1000 [06:24<02:00]``). With one the bar
    shows the larger of the step fraction and the time fraction (``train (<= 100000 steps,
    7 min): 91%|...| [06:24<00:38, step 755/100000, loss=0.1]``), not an 11-hour ETA for
    100000 steps that the 7-minute bound will never reach.

    Args:
        desc: the stage's name.
        steps: the step count that ends the stage (absolute, for a resumed run too).
        clock: the stage's :class:`Clock` (None or
            unbounded: steps only).
        start: the step the stage starts at (a resumed run).
        disable: no bar at all.
    """

    def __init__(
        self, desc: str, steps: int, clock: Any = None, *, start: int = 0, disable: bool = False
    ) -> None:
        from tqdm.auto import tqdm

        self.steps, self.start, self.clock = steps, start, clock
        self.seconds = None if clock is None else clock.remaining
        if self.seconds is None:
            self.bar = tqdm(total=steps, initial=start, desc=desc, disable=disable, file=sys.stderr)
            return
        bound = f"{self.seconds:.0f} s" if self.seconds < 90 else f"{self.seconds / 60:.1f} min"
        self._origin = clock.elapsed  # the clock may have started before this stage
        self.bar = tqdm(
            total=1000, desc=f"{desc} (<= {steps} steps, {bound})", disable=disable,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]",
            file=sys.stderr,
        )  # fmt: skip
        self.bar.set_postfix_str(f"step {start}/{steps}")

    def fraction(self, done: int) -> float:
        """The share of the stage done after step ``done`` (time-bounded bars)."""
        by_steps = (done - self.start) / (self.steps - self.start) if self.steps > self.start else 1
        if not self.seconds:
            return 1.0
        by_time = (self.clock.elapsed - self._origin) / self.seconds
        return min(max(by_steps, by_time), 1.0)

    def update(self, done: int, **postfix: Any) -> None:
        """Record that step ``done`` (1-based count) finished; ``postfix``: e.g. the loss."""
        if self.seconds is None:
            self.bar.update(done - self.bar.n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            return
        extra = "".join(f", {k}={v}" for k, v in postfix.items())
        self.bar.set_postfix_str(f"step {done}/{self.steps}{extra}", refresh=False)
        self.bar.update(round(1000 * self.fraction(done)) - self.bar.n)

    def write(self, text: str) -> None:
        """A line above the bar (stderr)."""
        self.bar.write(text, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


class Clock:
    """A wall-time budget: a deadline on a monotonic clock (None: unbounded).

    ``Clock.now`` is the time source; tests replace it with a fake clock.
    """

    now: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, seconds: float | None, *, deadline: float | None = None) -> None:
        self.start = Clock.now()
        ends = [t for t in (deadline, None if seconds is None else self.start + seconds) if t]
        self.deadline = min(ends) if ends else None
        #: Seconds this budget allows from its start (None: unbounded).
        self.limit = None if self.deadline is None else max(self.deadline - self.start, 0.0)

    @classmethod
    def minutes(cls, minutes: float | None) -> Clock:
        return cls(None if minutes is None else minutes * 60)

    def stage(self, seconds: float | None) -> Clock:
        """A budget for one stage: ``seconds`` from now, never past this clock's deadline."""
        return Clock(seconds, deadline=self.deadline)

    @property
    def elapsed(self) -> float:
        return Clock.now() - self.start

    @property
    def remaining(self) -> float | None:
        return None if self.deadline is None else max(self.deadline - Clock.now(), 0.0)

    def expired(self) -> bool:
        return self.deadline is not None and Clock.now() > self.deadline
