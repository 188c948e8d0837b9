"""Progress bars of training stages that stop at a step count or a wall-time bound."""

from __future__ import annotations

import sys
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
        clock: the stage's :class:`~htd_plugins.backbones.ldm.training.Clock` (None or
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
