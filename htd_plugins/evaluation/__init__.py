"""``htd evaluate``'s application: evaluation sets read from folders, the leakage check of its
inputs, and ``report.md`` assembled from the evaluators' own sections. The evaluators run
through the one driver, :class:`htd_core.evaluation.EvaluationDriver`.

Public names (for the experiment, scripts and tests; the modules are internal):

- :func:`open_set`: a lazy sequence of samples from a dataset, tile or image folder;
- :func:`open_sets`, :func:`check_leakage`, :func:`check_class_lists`: ``htd evaluate``'s
  sets from its arguments, the refusal of synthetic sets made from held-out images, and of
  datasets of another class list where masks are compared;
- :func:`write_report`, :func:`example_rows`: ``metrics.json`` + ``report.md`` (the
  evaluators' own sections), the example grid's rows.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "check_class_lists",
    "check_leakage",
    "example_rows",
    "open_set",
    "open_sets",
    "write_report",
]
_HOME = {
    "open_set": "sets",
    "open_sets": "inputs",
    "check_leakage": "inputs",
    "check_class_lists": "inputs",
    "write_report": "report",
    "example_rows": "report",
}


def __getattr__(name: str) -> Any:  # lazy: the command module imports this package cheaply
    if name in _HOME:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:  # the lazy names too (dir(), tab completion, the API reference)
    return sorted({*globals(), *__all__})
