"""``htd demo``: the method on real tissue, offline, in minutes on a CPU, through the
experiment runner (:mod:`htd_plugins.experiment`) with the ``demo`` budget.

1. real heterogeneous patches (see :mod:`.sources`: a user slide, GlaS tiles in the shared data
   folder, or the H&E image inside the tiatoolbox wheel), split by source image;
2. one shared autoencoder, then two models with the same budget and seed: ``crop`` (semantic
   map + real crops, the method) and ``unconditional`` (a model of its own, not the null
   branch of the conditioned one);
3. both generate from the same training layouts (each crop from the crop bank of the
   training patches: the layout's own source image outside its window, else another one);
4. ``results.md`` / ``results.json`` with the Frechet distance and KID of both sets against the
   held-out real patches under two real-weight encoders (FID Inception, EfficientNet-Lite0),
   beside real training patches at the same N and the held-out patches through the
   autoencoder (the floor), and ``figure.png`` (map | crops | crop arm | unconditional | real).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class DemoOptions:
    """Knobs of the demo (the ``demo`` budget: about 11 minutes on 2 CPU cores, under the 15 it must fit)."""

    output_dir: str = "htd-output/demo"
    slide: str | None = None
    data_dir: str | None = None
    budget: str = "demo"
    seed: int = 0
    device: str | None = None  # models and evaluators (None: a GPU when present)
    progress: bool = True


def run_demo(opts: DemoOptions, log: Any = None) -> dict[str, Any]:
    """Run the demo; returns the experiment's results (also in ``results.json``)."""
    from htd_plugins.experiment import Experiment, ExperimentConfig, ExperimentData, get_budget
    from htd_plugins.experiment.config import ARMS, Arm

    budget = get_budget(opts.budget)
    size = budget.image_size or 160  # native: the demo cuts GlaS patches at 160 px

    def data() -> ExperimentData:
        from htd_plugins.demo.sources import load_demo_data

        d = load_demo_data(size, slide=opts.slide, data_dir=opts.data_dir,
                           max_train=budget.max_train, max_test=budget.n_test, seed=opts.seed,
                           work_dir=opts.output_dir)  # fmt: skip
        tag = [
            [type(s)(s.image, s.mask, s.class_map, {**s.meta, "split": part}) for s in samples]
            for part, samples in (("train", d.train), ("test", d.test))
        ]
        return ExperimentData(tag[0], tag[1], d.source)

    arms = [Arm(a, list(ARMS[a]["builders"]), options=dict(ARMS[a].get("options", {})))
            for a in ("crop", "unconditional")]  # fmt: skip
    config = ExperimentConfig(name="demo", data={}, arms=arms, budget=opts.budget,
                              budget_options={"image_size": size}, evaluators=("frechet",),
                              seeds=(opts.seed,), output_dir=opts.output_dir, source="htd demo",
                              model={"device": opts.device} if opts.device else {},
                              fit={} if opts.progress else {"progress": False})  # fmt: skip
    return Experiment(config, data_source=data, log=log).run()
