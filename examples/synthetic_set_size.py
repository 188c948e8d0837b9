"""DeepLabv3+ on synthetic and on real + synthetic patches against the synthetic set's size.

Give the ``results.json`` (or run folders) of one experiment file run at several
``budget_options.n_synthetic``, smallest first; runs of several datasets may be given in one
call (grouped by their data). Each run's DeepLabv3+ scores of the arm, the gain of real +
synthetic over real, and each setting against the group's first run, paired by seed and
resample (``htd_plugins.experiment.set_size``), print as one markdown table.

    cp -r runs/glas runs/glas-3x   # a larger set grows the smaller one: the run goes on from it
    htd experiment examples/experiments/glas.yaml --out runs/glas-3x -o budget_options.n_synthetic=1800
    python examples/synthetic_set_size.py runs/glas runs/glas-3x
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs", nargs="+", help="results.json files or run folders, smallest set first"
    )
    parser.add_argument("--arm", default="crop", help="the arm compared (default: crop)")
    args = parser.parse_args()
    from htd_core.errors import InputError
    from htd_plugins.experiment import set_size_lines, set_size_rows

    groups: dict[tuple[str, str], dict[str, dict]] = {}
    for run in args.runs:
        path = Path(run) / "results.json" if Path(run).is_dir() else Path(run)
        try:
            results = json.loads(path.read_text())
            group = (results["name"], results["data_key"])
        except (OSError, ValueError, KeyError, TypeError):  # no file, not JSON, not a run's
            print(f"{run}: not an htd experiment's results.json: give a run folder or its "
                  "results.json", file=sys.stderr)  # fmt: skip
            return 2
        groups.setdefault(group, {})[run] = results
    lines = []
    for (name, _), runs in groups.items():
        try:
            found = set_size_rows(runs, args.arm)
        except InputError as err:
            print(err, file=sys.stderr)
            return 2
        sizes = [max(r["n_synthetic"], default=0) for r in found]
        if sizes != sorted(sizes):
            print(f"{name}: the runs are not smallest set first ({sizes}): each is read "
                  "against the first given", file=sys.stderr)  # fmt: skip
        rows = set_size_lines(found, name)
        lines += rows if not lines else rows[2:]  # one header
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
