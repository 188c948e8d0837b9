"""Evaluator: a streaming metric over real and synthetic samples (MONAI's lifecycle).

Besides ``reset`` / ``update`` / ``aggregate``, an evaluator declares what its clients use, so
``htd evaluate`` and its report hold no evaluator's name:

- :meth:`Evaluator.run_options`: which run-wide settings (:class:`RunSettings`: device, cache
  folder, output folder, encoders, weights) it takes, as constructor keywords;
- :meth:`Evaluator.report_section`: its Markdown section of ``report.md`` (plus any figures),
  rendered from saved metrics (default: a table of the metrics);
- :meth:`Evaluator.nearest_real` and :attr:`Evaluator.run_by_default`: optional extras.

Standard library, numpy and torch only (importable by ``htd_core``).
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from htd_core.registry import accepted_subset
from htd_core.types import TissueSample

#: Rows of the default report table; the rest is in ``metrics.json``.
MAX_TABLE_ROWS = 60


@dataclass(frozen=True)
class RunSettings:
    """Run-wide settings that ``htd evaluate`` offers every evaluator.

    Attributes:
        device: torch device (``--device``).
        encoders: encoder names given with ``--encoders``, in order; empty when not given
            (each evaluator then uses its own default).
        weights: encoder name -> local weights file (``--weights ENCODER=PATH``).
        cache_dir: folder for caches reused across runs (``--cache-dir``, default
            ``OUT/cache``); None when there is none.
        output_dir: the evaluator's own folder for figures and tables of one synthetic set
            (``OUT/figures/<evaluator>-<set>``); None when not writing per-set files.
        model: a saved pipeline folder (``--model``), for evaluators that measure the model
            itself (the ``frechet`` evaluator's reconstruction FD); None when not given.
        allow_overlap: ``--allow-overlap``: synthetic samples whose layout or crop sources are
            held-out images are scored anyway (recorded) instead of refused.
        seed: the run's seed, for evaluators with random choices (subsets, initialisation);
            None leaves each its own default.
    """

    device: str = "cpu"
    encoders: tuple[str, ...] = ()
    weights: Mapping[str, str] = field(default_factory=dict)
    cache_dir: Path | None = None
    output_dir: Path | None = None
    model: Path | None = None
    allow_overlap: bool = False
    seed: int | None = None


@dataclass(frozen=True)
class ReportContext:
    """Where a report section is written and where its figures go.

    Attributes:
        name: the evaluator's registered name (the key of its results).
        report_dir: the folder that holds ``report.md``.
        figure_dir: a folder (existing) for the section's figures; name files after the
            evaluator, since every evaluator shares it.
        output_dirs: synthetic set name -> the ``output_dir`` the evaluator was built with for
            that set (only sets where it took one).
    """

    name: str
    report_dir: Path
    figure_dir: Path
    output_dirs: Mapping[str, Path] = field(default_factory=dict)

    def link(self, path: str | Path) -> str:
        """``path`` as a Markdown link target, relative to ``report.md`` (``/`` separated)."""
        return Path(os.path.relpath(Path(path), self.report_dir)).as_posix()


class Evaluator(ABC):
    """Accumulate with :meth:`update`, answer with :meth:`aggregate`, forget with :meth:`reset`.

    ``update`` may be called many times with batches of real and/or synthetic samples;
    ``aggregate`` returns JSON-serialisable metrics. The class methods declare how
    ``htd evaluate`` builds the evaluator (:meth:`run_options`) and reports it
    (:meth:`report_section`); register the class itself (not a function) so they are found.

    Attributes:
        name: a display name (``Pipeline.evaluate`` keys results by it).
        run_by_default: run when ``htd evaluate`` is given no ``--evaluators``.
    """

    name: str = "evaluator"
    run_by_default: ClassVar[bool] = False

    @abstractmethod
    def reset(self) -> None:
        """Forget everything accumulated."""

    @abstractmethod
    def update(
        self,
        *,
        real: Sequence[TissueSample] | None = None,
        synthetic: Sequence[TissueSample] | None = None,
    ) -> None:
        """Add a batch of real and/or synthetic samples."""

    @abstractmethod
    def aggregate(self) -> dict[str, Any]:
        """Metrics over everything seen since the last reset."""

    def evaluate(
        self, real: Sequence[TissueSample], synthetic: Sequence[TissueSample]
    ) -> dict[str, Any]:
        """One-shot convenience: reset, update once, aggregate."""
        self.reset()
        self.update(real=real, synthetic=synthetic)
        return self.aggregate()

    # -- what clients use -----------------------------------------------------------------
    @classmethod
    def run_options(cls, run: RunSettings, options: Mapping[str, Any]) -> dict[str, Any]:
        """Constructor keywords this evaluator takes from the run-wide settings.

        The evaluation driver (:mod:`htd_core.evaluation`) builds the evaluator with these
        under the user's own options (``-o NAME.KEY=VALUE`` wins). The default offers
        ``device``, ``cache_dir``, ``output_dir``, ``model``, ``allow_overlap`` and ``seed``
        to a constructor with a keyword of that name (when the setting is set); override it to
        take ``run.encoders`` / ``run.weights`` or to rename a setting.

        Args:
            run: the run-wide settings.
            options: the user's own options for this evaluator (read them, e.g. to pick the
                weights of the encoder the user chose; do not return them).

        Returns:
            keyword -> value, each a keyword the constructor accepts.
        """
        return accepted_subset(cls, _generic_settings(run))

    @classmethod
    def report_section(
        cls, results: Mapping[str, Mapping[str, Any]], context: ReportContext
    ) -> str:
        """The evaluator's Markdown section of ``report.md``.

        A class method: the report is written from saved metrics, also when every result was
        resumed and no evaluator was built. The default is a ``## name`` heading, the class's
        summary line and a table with one row per scalar metric (nested keys joined by dots)
        and one column per synthetic set. Write figures under ``context.figure_dir`` (or read
        them from ``context.output_dirs``) and link them with ``context.link(path)``.

        Args:
            results: synthetic set name -> the metrics :meth:`aggregate` returned for it.
            context: the report's folders.

        Returns:
            Markdown text.
        """
        lines = [f"## {context.name}", ""]
        doc = cls.__dict__.get("__doc__") if cls is not Evaluator else None
        if doc and doc.strip():
            lines += [doc.strip().splitlines()[0], ""]
        sets = list(results)
        flat = {s: flatten_metrics(results[s]) for s in sets}
        keys = list(dict.fromkeys(k for s in sets for k in flat[s]))
        rows = [[k, *[flat[s].get(k) for s in sets]] for k in keys[:MAX_TABLE_ROWS]]
        lines.append(markdown_table(["metric", *sets], rows) if rows else "No metrics.\n")
        if len(keys) > MAX_TABLE_ROWS:
            lines += [f"{len(keys) - MAX_TABLE_ROWS} more values in `metrics.json`.", ""]
        return "\n".join(lines)

    @classmethod
    def nearest_real(cls, metrics: Mapping[str, Any]) -> Sequence[int] | None:
        """Per synthetic sample (in the order given), the index of its nearest real sample in
        the real samples given (in order), -1 when none; None when the evaluator finds no
        neighbours (the default). The report's example grid shows these."""
        return None


def evaluator_class(factory: Callable[..., Evaluator]) -> type[Evaluator]:
    """The Evaluator class a registered factory builds: itself when it is an Evaluator
    subclass, else :class:`Evaluator` (a plain function's class is known only once called)."""
    if isinstance(factory, type) and issubclass(factory, Evaluator):
        return factory
    return Evaluator


def evaluator_options(
    factory: Callable[..., Evaluator], run: RunSettings, options: Mapping[str, Any]
) -> dict[str, Any]:
    """The keywords to build an evaluator with: the user's ``options`` over the run-wide
    settings its class takes (:meth:`Evaluator.run_options`), each passed only if ``factory``
    accepts it (every one when it takes ``**kwargs``)."""
    cls = evaluator_class(factory)
    offered = cls.run_options(run, options) if cls is not Evaluator else _generic_settings(run)
    return {**accepted_subset(factory, offered), **options}


def _generic_settings(run: RunSettings) -> dict[str, Any]:
    offered = {"device": run.device, "cache_dir": run.cache_dir, "output_dir": run.output_dir,
               "model": run.model, "allow_overlap": run.allow_overlap or None, "seed": run.seed}  # fmt: skip
    return {k: v for k, v in offered.items() if v is not None}


# -- Markdown helpers for report sections ---------------------------------------------------
def format_value(value: Any, digits: int = 4) -> str:
    """A table cell: floats to ``digits`` significant digits, None/NaN/inf as ``-``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (cells through :func:`format_value`), followed by a blank line."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(format_value(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar metrics keyed by dotted path (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``); a short
    list of scalars becomes one comma-joined cell, a longer one ``[n values]``."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten_metrics(value, path))
        elif isinstance(value, list | tuple):
            scalar = all(not isinstance(v, Mapping | list | tuple) for v in value)
            short = scalar and len(value) <= 8
            out[path] = (
                ", ".join(format_value(v) for v in value) if short else f"[{len(value)} values]"
            )
        else:
            out[path] = value
    return out


__all__ = [
    "Evaluator",
    "ReportContext",
    "RunSettings",
    "evaluator_class",
    "evaluator_options",
    "flatten_metrics",
    "format_value",
    "markdown_table",
]
