"""``metrics.json`` + ``report.md`` + PNG figures for one ``htd evaluate`` run.

Results are keyed ``results[evaluator][synthetic set name] = metrics``; the synthetic sets are
the condition types compared (e.g. ``dual``, ``unconditional``, ``embedding``). The report is
assembled from whatever evaluators ran: an inputs summary, an example grid, then each
evaluator's own section (:meth:`htd_core.Evaluator.report_section`), in run order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.interfaces import Evaluator
from htd_core.interfaces.evaluator import ReportContext
from htd_core.io import atomic_write_json, atomic_write_text
from htd_core.types import TissueSample
from htd_plugins.evaluation.crops import note_tile, real_crops_view


def example_rows(
    synthetic: Sequence[TissueSample],
    real: Sequence[TissueSample] | None = None,
    nearest: Sequence[int] | None = None,
    n: int = 4,
    root: str | Path | None = None,
) -> list[dict[str, np.ndarray | None]]:
    """Grid rows ``map | real crops | synthetic | nearest real`` for the first ``n`` samples;
    a column no row fills is left out (the title names only the columns drawn).

    ``real crops`` are the real conditioning crops where the model saw them, read back from
    the layout's image (``meta["layout"]``, relative to the synthetic set's folder ``root``;
    see :mod:`.crops`); when their pixels are not available the cell says why, and samples
    that only record ``meta["crop_boxes"]`` show those boxes' outlines on the synthetic image.
    ``nearest real`` needs ``real`` and per-sample indices into it (see
    :meth:`htd_core.Evaluator.nearest_real`).
    """
    rows = []
    for i in range(min(n, len(synthetic))):
        s = synthetic[i]
        cm = s.class_map
        has_map = bool((s.mask != cm.ignore_index).any())
        crops, why = real_crops_view(s.meta, s.mask.shape, root)
        if crops is None and why is not None:
            crops = note_tile(why)
        elif crops is None and s.image is not None:  # boxes only: outline them, no pixels claimed
            from htd_plugins.evaluators import crop_region

            region = crop_region(s.meta, s.mask.shape)
            if region is not None:
                crops = _outline(s.image, region)
        near = None
        if real is not None and nearest is not None and i < len(nearest) and nearest[i] >= 0:
            near = real[int(nearest[i])].image
        rows.append(
            {
                "map": cm.colorize(s.mask) if has_map else None,
                "real crops": crops,
                "synthetic": s.image,
                "nearest real": near,
            }
        )
    empty = [k for k in ("map", "real crops", "nearest real") if all(r[k] is None for r in rows)]
    return [{k: v for k, v in r.items() if k not in empty} for r in rows]


def _outline(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``image`` with the border of ``region`` (crop boxes) drawn in yellow."""
    edge = region.copy()
    edge[1:-1, 1:-1] &= ~(
        region[:-2, 1:-1] & region[2:, 1:-1] & region[1:-1, :-2] & region[1:-1, 2:]
    )
    out = image.copy()
    out[edge] = (255, 220, 0)
    return out


def _nearest(
    results: Mapping[str, Mapping[str, Mapping[str, Any]]],
    evaluators: Mapping[str, type[Evaluator]],
    set_name: str,
) -> Sequence[int] | None:
    """Nearest-real indices for one set from the first evaluator (in run order) giving them."""
    for ev_name, by_set in results.items():
        if set_name in by_set:
            found = evaluators.get(ev_name, Evaluator).nearest_real(by_set[set_name])
            if found is not None:
                return found
    return None


def _inputs_lines(inputs: Mapping[str, Any]) -> list[str]:
    def where(path: Any, match: Any) -> str:
        return f"`{path}`" + (f" matching `{match}`" if match else "")

    n_real = inputs.get("n_real")
    lines = [f"- real: {where(inputs.get('real'), inputs.get('match_real'))} ({n_real} images)"]
    if inputs.get("real_test"):
        test = where(inputs["real_test"], inputs.get("match_real_test"))
        lines.append(f"- held-out real: {test} ({inputs.get('n_real_test')} images)")
    globs = inputs.get("match_synthetic") or {}
    lines += [
        f"- synthetic `{k}`: {where(v['path'], globs.get(k))} ({v['n']} images)"
        for k, v in inputs.get("synthetic", {}).items()
    ]
    if inputs.get("model"):
        model = inputs["model"]
        lines.append(f"- model: `{model['path']}` (content id {model['id']})")
    for name, o in (inputs.get("overlap") or {}).items():
        shown = ", ".join(o["sources"][:8]) + (" ..." if len(o["sources"]) > 8 else "")
        lines.append(
            f"- **LEAKAGE (--allow-overlap):** synthetic `{name}` shares {len(o['sources'])} "
            f"source image(s) with the held-out set ({shown}): {o['layout_rows']} of {o['n']} "
            f"samples generated from held-out layouts, {o['crop_rows']} with held-out crops"
        )
    return [*lines, ""]


def write_report(
    out: str | Path,
    results: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    inputs: Mapping[str, Any],
    real: Sequence[TissueSample],
    synthetic: Mapping[str, Sequence[TissueSample]],
    evaluators: Mapping[str, type[Evaluator]] | None = None,
    output_dirs: Mapping[str, Mapping[str, Path]] | None = None,
    figure_dir: str = "figures",
    examples: int = 4,
) -> dict[str, Any]:
    """Write ``metrics.json``, ``report.md`` and figures under ``out``; returns the JSON.

    Args:
        out: the output folder (``report.md`` and ``metrics.json`` go in it).
        results: evaluator name -> synthetic set name -> metrics.
        inputs: what was evaluated (paths, counts, globs, options), stored in ``metrics.json``.
        real: the real samples as given to the evaluators (for the example grid).
        synthetic: synthetic set name -> its samples.
        evaluators: evaluator name -> its class (its ``report_section`` and ``nearest_real``);
            a name missing here gets :class:`htd_core.Evaluator`'s defaults.
        output_dirs: evaluator name -> set name -> the ``output_dir`` it was built with.
        figure_dir: folder for shared figures, relative to ``out``.
        examples: example rows per synthetic set.
    """
    out = Path(out)
    fig_dir = out / figure_dir
    fig_dir.mkdir(parents=True, exist_ok=True)
    evaluators = dict(evaluators or {})
    output_dirs = dict(output_dirs or {})
    doc = {"inputs": dict(inputs), "results": {k: dict(v) for k, v in results.items()}}
    atomic_write_json(out / "metrics.json", doc)  # the numbers first, whatever the report does
    lines = ["# htd evaluation report", "", *_inputs_lines(inputs)]

    rows, labels = [], []
    for name, seq in synthetic.items():
        nearest = _nearest(results, evaluators, name)
        root = getattr(seq, "root", None)  # a set read from a folder: its layouts resolve from it
        for i, row in enumerate(example_rows(seq, real, nearest, examples, root)):
            rows.append(row)
            labels.append(f"{name} #{i}")
    if rows:
        from htd_plugins.evaluators import save_grid

        title = " | ".join(dict.fromkeys(k for row in rows for k in row))
        save_grid(fig_dir / "examples.png", rows, row_labels=labels, title=title)
        lines += ["## Examples", "", f"![examples]({figure_dir}/examples.png)", ""]
    lines += evaluator_sections(results, evaluators, out, fig_dir, output_dirs)
    atomic_write_text(out / "report.md", "\n".join(lines))
    return doc


def evaluator_sections(
    results: Mapping[str, Mapping[str, Mapping[str, Any]]],
    evaluators: Mapping[str, type[Evaluator]],
    report_dir: Path,
    figure_dir: Path,
    output_dirs: Mapping[str, Mapping[str, Path]] | None = None,
) -> list[str]:
    """Each evaluator's own section (:meth:`htd_core.Evaluator.report_section`), in the
    order of ``results``, as Markdown lines; figures go to ``figure_dir`` (existing)."""
    lines: list[str] = []
    for name, by_set in results.items():
        context = ReportContext(name=name, report_dir=report_dir, figure_dir=figure_dir,
                                output_dirs=(output_dirs or {}).get(name, {}))  # fmt: skip
        section = evaluators.get(name, Evaluator).report_section(by_set, context)
        lines += [section.rstrip("\n"), ""]
    return lines
