"""THE evaluation driver: evaluators over a real set and named synthetic sets.

``htd evaluate``, ``htd experiment`` and :meth:`htd_core.Pipeline.evaluate` all run their
evaluators through :class:`EvaluationDriver`, which knows no evaluator by name: it builds each
one from its registered name with the run-wide settings it declares
(:meth:`~htd_core.Evaluator.run_options`), streams the real set then each synthetic set
through MONAI's metric lifecycle (``reset`` / ``update`` / ``aggregate``), keeps every
finished (evaluator, set) result in a store keyed by its inputs (a rerun resumes; changed
inputs are scored afresh), and hands the results to the evaluators' own
:meth:`~htd_core.Evaluator.report_section` through the caller's report.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import ConfigError
from htd_core.interfaces.evaluator import (
    Evaluator,
    RunSettings,
    evaluator_class,
    evaluator_options,
)
from htd_core.types import TissueSample


@dataclass(frozen=True)
class EvaluatorRun:
    """One evaluator of a run.

    Attributes:
        name: its registered name (the key of its results); for an instance, its ``name``.
        options: the user's own constructor options (over the run-wide settings it takes).
        subset: score at most this many synthetic samples of each set, a seeded subset in
            their order (None: all), for evaluators whose cost grows with the set.
        instance: an evaluator built by the caller (then ``options`` are unused).
    """

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    subset: int | None = None
    instance: Evaluator | None = None

    @classmethod
    def parse(cls, value: Any, where: str = "evaluators") -> EvaluatorRun:
        """From a registered name, ``{"name": ..., **options}``, an Evaluator, or itself."""
        if isinstance(value, EvaluatorRun):
            return value
        if isinstance(value, Evaluator):
            return cls(value.name, instance=value)
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping) and isinstance(value.get("name"), str):
            return cls(value["name"], {k: v for k, v in value.items() if k != "name"})
        raise ConfigError(
            f"{where}: give an evaluator name, {{name: ..., **options}} or an Evaluator, got "
            f"{type(value).__name__}"
        )


class EvaluationDriver:
    """Runs evaluators through their lifecycle; see the module docstring.

    Args:
        evaluators: names, ``{"name": ..., **options}`` mappings, Evaluator instances or
            :class:`EvaluatorRun` s (each name once).
        settings: run-wide settings offered to every evaluator that takes them.
        manager: the plugin manager whose registry builds them (default: the process's).
        store: folder of finished results (``<evaluator>--<set>.json``); None keeps none.
        figures_dir: each (evaluator, set) gets ``figures_dir/<evaluator>-<set>`` as its
            ``output_dir`` (when it takes one); None: the settings' own.
        batch_size: samples per ``update`` call.
        progress: a progress bar per (evaluator, set) on stderr.
        log: where "reused" notes go (default: stderr).
        force: recompute results that are in the store.
        root: the folder the run's outputs live in (an experiment's run folder): paths under
            it enter the stored results' keys relative to it, so a copy of the folder reuses
            its results (keys written before, with the full path, are still read).

    Raises:
        ConfigError: an unknown evaluator, an evaluator listed twice, or a bad option (on
            :meth:`check`).
    """

    def __init__(
        self,
        evaluators: Sequence[Any],
        *,
        settings: RunSettings | None = None,
        manager: Any = None,
        store: str | Path | None = None,
        figures_dir: str | Path | None = None,
        batch_size: int = 32,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
        force: bool = False,
        root: str | Path | None = None,
    ) -> None:
        from htd_core.plugins import get_plugin_manager

        self.runs = [EvaluatorRun.parse(e, f"evaluators[{i}]") for i, e in enumerate(evaluators)]
        names = [r.name for r in self.runs]
        if len(set(names)) != len(names):
            raise ConfigError(f"evaluators: each evaluator once (got {names})")
        if not self.runs:
            raise ConfigError("no evaluator to run: name at least one")
        self.settings = settings or RunSettings()
        self.registry = (manager or get_plugin_manager()).registry("htd_register_evaluators")
        for r in self.runs:
            if r.instance is None:
                self.registry.entry(r.name)  # an unknown name lists what exists
        self.store = Path(store) if store is not None else None
        self.figures_dir = Path(figures_dir) if figures_dir is not None else None
        self.batch_size, self.progress, self.force = int(batch_size), bool(progress), bool(force)
        self.root = str(root) if root is not None else None
        self._log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self._output_dirs: dict[str, dict[str, Path]] = {r.name: {} for r in self.runs}

    # -- building -------------------------------------------------------------------------
    def classes(self) -> dict[str, type[Evaluator]]:
        """Each evaluator's class (whose class methods write its report section)."""
        return {
            r.name: type(r.instance)
            if r.instance is not None
            else evaluator_class(self.registry.entry(r.name).factory)
            for r in self.runs
        }

    def options(self, run: EvaluatorRun, set_name: str | None = None) -> dict[str, Any]:
        """The keywords ``run`` is built with (for ``set_name``: with its own output folder)."""
        settings = self.settings
        if set_name is not None and self.figures_dir is not None:
            settings = replace(settings, output_dir=self.figures_dir / f"{run.name}-{set_name}")
        return evaluator_options(self.registry.entry(run.name).factory, settings, run.options)

    def resolved_options(self) -> dict[str, dict[str, Any]]:
        """Per evaluator, the keywords it is built with, less its per-set output folder
        (JSON-ready: what a report records)."""
        out = {}
        for r in self.runs:
            opts = {} if r.instance is not None else self.options(r)
            out[r.name] = json.loads(json.dumps(opts, default=str))
        return out

    def check(self) -> None:
        """Build every evaluator once with its options: a bad option fails before any work."""
        for r in self.runs:
            if r.instance is None:
                self.registry.create(r.name, **self.options(r))

    def build(self, run: EvaluatorRun, set_name: str) -> Evaluator:
        """A fresh evaluator for one synthetic set."""
        if run.instance is not None:
            return run.instance
        return self.registry.create(run.name, **self.options(run, set_name))

    def output_dirs(self) -> dict[str, dict[str, Path]]:
        """Evaluator -> set -> its output folder, for evaluators that take one (filled by
        :meth:`run`)."""
        return self._output_dirs

    # -- running --------------------------------------------------------------------------
    def run(
        self,
        real: Sequence[TissueSample],
        synthetic: Mapping[str, Sequence[TissueSample]],
        *,
        real_key: str | None = None,
        keys: Mapping[str, str] | None = None,
        extra: Any = None,
        seed: int = 0,
    ) -> dict[str, dict[str, Any]]:
        """Every evaluator on every synthetic set: ``results[evaluator][set] = metrics``.

        Args:
            real: the real samples (held-out ones marked ``meta["split"] == "test"``), streamed
                first, in order.
            synthetic: set name -> samples.
            real_key, keys: content keys of the real set and of each synthetic set (default:
                their ``content_key()`` when they have one); results are stored and reused
                only where both are known.
            extra: anything else the results depend on (JSON-able), in the store key.
            seed: seed of the synthetic subsets (:attr:`EvaluatorRun.subset`).
        """
        real_key = real_key if real_key is not None else _content_key(real)
        resolved = self.resolved_options()
        results: dict[str, dict[str, Any]] = {r.name: {} for r in self.runs}
        self._output_dirs = {r.name: {} for r in self.runs}
        for r in self.runs:
            for set_name, samples in synthetic.items():
                opts = {} if r.instance is not None else self.options(r, set_name)
                if opts.get("output_dir") is not None:
                    self._output_dirs[r.name][set_name] = Path(opts["output_dir"])
                set_key = (keys or {}).get(set_name) or _content_key(samples)
                chosen = subset(samples, r.subset, seed)
                key = keys_read = None
                if real_key is not None and set_key is not None and r.instance is None:
                    state = [r.name, resolved[r.name], real_key, set_key,
                             len(chosen), r.subset, seed if r.subset else None, extra]  # fmt: skip
                    keys_read = self._keys(json.dumps(state, sort_keys=True, default=str))
                    key = keys_read[0]
                saved = self._stored(r.name, set_name, keys_read)
                if saved is not None:
                    results[r.name][set_name] = saved
                    continue
                metrics = self.stream(self.build(r, set_name), real, chosen, f"{r.name} {set_name}")
                if len(chosen) < len(samples):
                    metrics = {**metrics, "n_synthetic_scored": len(chosen)}
                self._put(r.name, set_name, key, metrics)
                results[r.name][set_name] = metrics
        return results

    def stream(
        self,
        evaluator: Evaluator,
        real: Sequence[TissueSample],
        synthetic: Sequence[TissueSample],
        desc: str = "evaluate",
    ) -> dict[str, Any]:
        """``reset``, the real then the synthetic samples in batches through ``update``,
        ``aggregate``."""
        from tqdm.auto import tqdm

        evaluator.reset()
        total = len(real) + len(synthetic)
        with tqdm(
            total=total, desc=desc, unit="img", disable=not self.progress, file=sys.stderr
        ) as bar:
            for batch in batches(real, self.batch_size):
                evaluator.update(real=batch)
                bar.update(len(batch))
            for batch in batches(synthetic, self.batch_size):
                evaluator.update(synthetic=batch)
                bar.update(len(batch))
        return evaluator.aggregate()

    def _path(self, name: str, set_name: str) -> Path | None:
        return None if self.store is None else self.store / f"{name}--{set_name}.json"

    def _keys(self, state: str) -> tuple[str, ...]:
        """The store key of ``state`` (JSON), a path that starts with :attr:`root` (as given or
        absolute) made relative to it, then the key written before ``root`` existed (full
        paths): both are read, the first is written."""
        import re

        def digest(text: str) -> str:
            return hashlib.sha256(text.encode()).hexdigest()

        if self.root is None:
            return (digest(state),)
        forms = sorted({self.root, str(Path(self.root).resolve())}, key=len, reverse=True)
        spelled = "|".join(re.escape(json.dumps(f)[1:-1]) for f in forms)  # as JSON writes it
        return digest(re.sub(f'"(?:{spelled})(?=[/"])', '"<root>', state)), digest(state)

    def _stored(
        self, name: str, set_name: str, keys: Sequence[str] | None
    ) -> dict[str, Any] | None:
        path = self._path(name, set_name)
        if not keys or path is None or self.force or not path.is_file():
            return None
        saved = json.loads(path.read_text())
        if saved.get("key") not in keys:
            return None
        self._log(f"{name} on {set_name!r}: reusing the result in {path} (same inputs)")
        return saved["metrics"]

    def _put(self, name: str, set_name: str, key: str | None, metrics: dict[str, Any]) -> None:
        from htd_core.io import atomic_write_json

        path = self._path(name, set_name)
        if key is not None and path is not None:
            atomic_write_json(path, {"key": key, "metrics": metrics})


def subset(samples: Sequence[Any], cap: int | None, seed: int) -> Sequence[Any]:
    """At most ``cap`` of ``samples``: a seeded subset in their order (all of them when
    ``cap`` is None or not below ``len(samples)``)."""
    if not cap or cap >= len(samples):
        return samples
    keep = np.sort(np.random.default_rng(seed + 11).choice(len(samples), cap, replace=False))
    return [samples[int(i)] for i in keep]


def batches(seq: Sequence[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most ``size`` items."""
    for start in range(0, len(seq), size):
        yield [seq[i] for i in range(start, min(start + size, len(seq)))]


def _content_key(samples: Any) -> str | None:
    key = getattr(samples, "content_key", None)
    return key() if callable(key) else None
