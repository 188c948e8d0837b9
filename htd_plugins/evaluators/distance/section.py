"""The Frechet distance section of ``report.md`` (``FrechetEvaluator.report_section``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from htd_core.interfaces.evaluator import ReportContext, markdown_table

FIGURE = "fd.png"


def fd_rows(results: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, int, dict[str, float]]]:
    """(row label, N, encoder -> FD) for every synthetic set, then the reference rows: real
    training images at each synthetic set's N (one row per distinct N) and the autoencoder's
    reconstructions of those training images (``references.reference_rows``)."""
    rows: list[tuple[str, int, dict[str, float]]] = []
    train: dict[int, dict[str, float]] = {}
    recon: dict[int, dict[str, float]] = {}
    for name, m in results.items():
        encoders = m["encoders"]
        n = next(iter(encoders.values()))["n_synthetic"]
        rows.append((f"synthetic `{name}`", n, {e: r["fd"] for e, r in encoders.items()}))
        for e, r in encoders.items():
            if "fd_real_train" in r:
                train.setdefault(r["n_real_train"], {})[e] = r["fd_real_train"]
            if "fd_reconstruction" in r:
                recon.setdefault(r["n_reconstruction"], {})[e] = r["fd_reconstruction"]
    rows += [("real training images (reference)", n, v) for n, v in sorted(train.items())]
    rows += [
        ("autoencoder reconstructions of training images (reference)", n, v)
        for n, v in sorted(recon.items())
    ]
    return rows


def autoencoder_lines(
    results: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str]
) -> list[str]:
    """One line per synthetic set and encoder with a reconstruction row, worded by the numbers:
    a set at or below the row is not limited by the autoencoder's round trip (the row is no
    floor); a set above it is further from the real images than the round trip alone."""
    out = []
    for name, m in results.items():
        for e, r in m["encoders"].items():
            fd, recon = r.get("fd"), r.get("fd_reconstruction")
            if fd is None or recon is None:
                continue
            if fd <= recon:
                text = (f"scores {fd:.1f}, at or below the autoencoder's reconstructions "
                        f"({recon:.1f}): the autoencoder's round trip does not limit it here")  # fmt: skip
            else:
                text = (f"scores {fd:.1f}, above the autoencoder's reconstructions ({recon:.1f}): "
                        "it is further from the real images than the round trip alone, so "
                        "generation, not only the autoencoder, costs the difference")  # fmt: skip
            out.append(f"- `{name}` under {labels.get(e, e)} {text}.")
    return [*out, ""] if out else []


def frechet_section(results: Mapping[str, Mapping[str, Any]], context: ReportContext) -> str:
    """One FD table (rows: synthetic sets and reference rows; columns: encoders), FD-infinity
    and KID when computed, a bar chart ``fd.png`` in ``context.figure_dir`` and the notes."""
    from htd_plugins.evaluators.figures import save_bar_chart

    sets = list(results)
    encoders = list(dict.fromkeys(e for s in sets for e in results[s]["encoders"]))
    labels = {
        e: next(results[s]["encoders"][e]["label"] for s in sets if e in results[s]["encoders"])
        for e in encoders
    }
    first = next(iter(results[sets[0]]["encoders"].values()))
    reference = {"held-out real": "the held-out real images", "all real": "all the real images"}
    lines = [
        "## Frechet distance",
        "",
        f"Each row against {reference.get(first.get('reference'), 'the real images')} "
        f"({first['n_real']}), under each encoder (FD depends on the encoder; compare rows "
        "within a column). Lower is closer. The real training images, at the same N as the "
        "synthetic set, show what a good value is; the held-out images passed through the "
        "model's autoencoder show what its round trip alone costs (every generated image is "
        "decoded by it). What that row says of each synthetic set follows the table.",
        "",
    ]
    rows = fd_rows(results)
    if not any(label.startswith("real training") for label, _, _ in rows):
        lines += [
            "No real-vs-real row: the real set has no held-out part (`htd evaluate "
            "--real-test`), so the synthetic sets are compared with every real image.",
            "",
        ]
    table = [[label, n, *[fds.get(e) for e in encoders]] for label, n, fds in rows]
    lines.append(markdown_table(["compared with the reference", "N", *labels.values()], table))
    extra = [
        k for k in ("fd_inf", "kid")
        if any(k in results[s]["encoders"].get(e, {}) for s in sets for e in encoders)
    ]  # fmt: skip
    if extra:
        body = [
            [f"{k} `{s}`", *[results[s]["encoders"].get(e, {}).get(k) for e in encoders]]
            for k in extra for s in sets
        ]  # fmt: skip
        lines.append(markdown_table(["metric", *labels.values()], body))
    lines += autoencoder_lines(results, labels)
    values = {labels[e]: {label: fds[e] for label, _, fds in rows if e in fds} for e in encoders}
    chart = save_bar_chart(
        context.figure_dir / FIGURE,
        {g: {k.replace("`", ""): v for k, v in series.items()} for g, series in values.items()},
        ylabel="Frechet distance",
        title="FD per encoder: synthetic sets and reference rows",
    )
    lines += [f"![FD per encoder]({context.link(chart)})", ""]
    warnings = list(dict.fromkeys(w for s in sets for w in results[s].get("warnings", [])))
    if warnings:
        lines += ["Notes:", ""] + [f"- {w}" for w in warnings] + [""]
    return "\n".join(lines)
