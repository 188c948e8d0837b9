"""The experiment file's plain values, checked where they are read (:mod:`.config`): its seeds,
its evaluators and its budget fields. Each error names the file, or ``-o KEY`` where the value
came from the command line, and raises :class:`~htd_core.errors.ConfigError`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from htd_core.errors import ConfigError


def seeds_of(raw: Mapping[str, Any], label: str) -> tuple[int, ...]:
    """``seeds: [0, 1, 2]`` or ``seed: 0`` (not both): distinct integers >= 0, at least one."""
    if "seeds" in raw and "seed" in raw:
        raise ConfigError(f"{label}: give seeds: [0, 1, 2] or seed: 0, not both")
    value = raw.get("seeds", [raw.get("seed", 0)])
    value = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(
            f"{label}: seeds={value!r}: give a non-empty list of integers >= 0, e.g. seeds: [0, 1, 2]"
        )
    for s in value:
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise ConfigError(
                f"{label}: seeds: {s!r} is not an integer >= 0; e.g. seeds: [0, 1, 2]"
            )
    if len(set(value)) != len(value):
        raise ConfigError(
            f"{label}: seeds: a seed listed twice (got {list(value)}); list each seed once, "
            "e.g. seeds: [0, 1, 2]"
        )
    return tuple(value)


def evaluators_of(value: Any, where: str) -> tuple[Any, ...]:
    """Registered evaluator names or ``{name, **options}`` mappings, each once (any evaluator
    a plugin registers)."""
    from htd_core.errors import RegistryError
    from htd_core.evaluation import EvaluatorRun
    from htd_core.plugins import get_registry

    items = value if isinstance(value, list | tuple) else [value]
    registry = get_registry("evaluators")
    names = []
    for i, item in enumerate(items):
        run = EvaluatorRun.parse(item, f"{where}[{i}]")
        try:
            registry.entry(run.name)
        except RegistryError as exc:
            raise ConfigError(f"{where}[{i}]: {exc}") from None
        names.append(run.name)
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: each evaluator once (got {names})")
    return tuple(items)


def check_budget_options(options: Mapping[str, Any], label: str) -> None:
    """Refuse a budget field that does not exist or a value out of its range (the fields and
    ranges are every preset's, so the ``cpu-quick`` preset checks them) before any work."""
    from htd_core.errors import HtdError
    from htd_plugins.experiment.budgets import get_budget

    try:
        get_budget("cpu-quick", **dict(options))
    except HtdError as exc:
        raise ConfigError(f"{label}: budget_options: {exc}") from None
