"""The per-arm, per-seed stages of an experiment run: ``train:<arm>@<seed>`` and
``generate:<arm>@<seed>`` (mixed into :class:`.runner.Experiment`).

Each arm is trained and sampled once per seed of the file's ``seeds`` (the seed of its
denoiser's initialisation and batches, of its crops' draws and of its sampling noise); the
data, the layouts, the crop bank and the autoencoder are shared by every arm and seed.
Folders: ``OUT/arms/<arm>/seed-<seed>/{train,synthetic}``.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from htd_core.io import atomic_open, atomic_write_json
from htd_plugins.experiment.config import Arm
from htd_plugins.experiment.stages import keyed_fit, keyed_options, own_folder, stage_key


def arm_folder(out: Path, arm: str, seed: int) -> Path:
    """``OUT/arms/<arm>/seed-<seed>``."""
    return out / "arms" / arm / f"seed-{seed}"


def is_latent(arm: Arm) -> bool:
    """Whether ``arm``'s backbone is a latent diffusion model (it shares the autoencoder)."""
    from htd_core.interfaces import LatentBackbone
    from htd_core.plugins import get_registry

    factory = get_registry("backbones").entry(arm.backbone).factory
    return isinstance(factory, type) and issubclass(factory, LatentBackbone)


def latent_arm(arms: list[Arm], where: str) -> Arm:
    """The first arm with a latent backbone: it trains the shared autoencoder, and its model
    folder gives the FD's reconstruction row.

    Raises:
        ConfigError: no arm has one (a training-free arm alone has nothing to compare with).
    """
    for arm in arms:
        if is_latent(arm):
            return arm
    from htd_core.errors import ConfigError

    raise ConfigError(
        f"{where}: no arm has a latent diffusion backbone (e.g. crop): the {arms[0].name!r} "
        "arm is a reference beside one, not an experiment alone"
    )


class ArmStages:
    """Training and generation of each arm and seed (see the module docstring)."""

    def build_pipeline(self, arm: Arm, vae: Mapping[str, Any], seed: int, classes: Any = ...,
                       bank: Any = None) -> Any:  # fmt: skip
        """A fresh pipeline for ``arm`` on the shared autoencoder. ``classes``: the data's
        class names by default (None builds it before the data is read, to check options);
        ``bank``: the crop bank (its path by default), given to every builder taking one."""
        from htd_core.config import ComponentSpec
        from htd_core.pipeline import Pipeline
        from htd_core.plugins import create, get_registry

        if classes is ...:
            classes = list(self.data.train[0].class_map.names)
        bank = str(self.bank_path) if bank is None else bank
        reg = get_registry("condition_builders")
        builders = [
            ComponentSpec.parse(b, f"{self.config.source}: arms.{arm.name}.builders[{i}]").create(
                reg, {"classes": classes, "seed": seed, "bank": bank}
            )
            for i, b in enumerate(arm.builders)
        ]
        b = self.budget
        # the shared autoencoder (a pretrained one named in ``model:`` is saved calibrated
        # there); a training-free backbone (collage) takes its arm's options only
        options = {"preset": b.preset, "image_size": self.image_size, **self.config.model,
                   "autoencoder": vae["path"], **arm.options} if is_latent(arm) else dict(arm.options)  # fmt: skip
        return Pipeline(
            condition_builders=builders, backbone=create("backbones", arm.backbone, **options)
        )

    def check_arm(self, arm: Arm) -> None:
        """Build the arm's pipeline (on an empty crop bank) and resolve the budget's
        generation options with it, so a bad builder, backbone or generation option fails
        before any data is read."""
        from htd_core.errors import ConfigError, HtdError
        from htd_plugins.condition_builders import CropBank

        pipe = self.build_pipeline(arm, {"path": None}, self.config.seed, classes=None,
                                   bank=CropBank({}))  # fmt: skip
        try:
            pipe.generation_options(**self.budget.generation(self.config.seed))
        except HtdError as exc:
            raise ConfigError(
                f"{self.config.source}: arm {arm.name!r}: the budget's generation options "
                f"(budget_options.guidance_scale / scheduler / num_inference_steps): {exc}"
            ) from None
        if is_latent(arm):  # its training options (the experiment's fit, then the arm's own)
            from htd_core.options import override
            from htd_plugins.backbones import TrainOptions

            try:
                override(TrainOptions(), self.fit(arm), "fit")
            except HtdError as exc:
                where = f" arm {arm.name!r}:" if arm.fit else ""  # exc names the fit option
                raise ConfigError(f"{self.config.source}:{where} {exc}") from None

    def arm_key(self, arm: Arm, vae: Mapping[str, Any], seed: int) -> str:
        b = self.budget
        fit = keyed_fit(arm.fit)
        own = [fit] if fit else []  # absent when empty: older runs keep their keys
        recipe = self.recipe(arm)
        own += [recipe] if recipe else []
        return stage_key("train", vae["key"], self.bank_key, arm.name, arm.builders, arm.backbone,
                         arm.options, b.preset, self.image_size, b.steps, b.batch_size,
                         keyed_options(self.config.model), keyed_fit(self.config.fit), seed, *own)  # fmt: skip

    def recipe(self, arm: Arm) -> dict[str, Any]:
        """The preset's training defaults that came after runs were keyed (``TrainOptions.LATER``,
        e.g. the ``small`` preset's Min-SNR-5), as the arm trains them, where they are not the
        option's original value: in the train key, so a run trained before that default changed
        is never reused as if it had it (and older runs without them keep their keys)."""
        from htd_plugins.backbones import TrainOptions

        if not is_latent(arm):
            return {}
        given = self.fit(arm)
        later = {k: self.trained_with(arm, k) for k in TrainOptions.LATER}
        return {k: v for k, v in later.items() if v != TrainOptions.LATER[k] and k not in given}

    def trained_with(self, arm: Arm, option: str) -> Any:
        """The value of training option ``option`` the arm trains with: its own ``fit``, the
        file's, else the budget's model preset's default."""
        from htd_plugins.backbones import get_preset

        return self.fit(arm).get(option, getattr(get_preset(self.budget.preset).train, option))

    def fit(self, arm: Arm) -> dict[str, Any]:
        """The training options the arm gives: the experiment file's ``fit``, then the arm's own
        (which wins)."""
        return {**self.config.fit, **arm.fit}

    def decoders(self, vae: Mapping[str, Any]) -> dict[str, str | None]:
        """The autoencoder folder that decodes each arm's images: the shared one (``vae``), the
        arm's own where its options name one (an autoencoder ablation arm), None for a
        training-free arm (collage). For the results: the shared autoencoder's reconstruction
        row speaks only for the arms it decodes."""
        folders = {a.name: a.options.get("autoencoder") or vae.get("path") if is_latent(a)
                   else None for a in self.config.arms}  # fmt: skip
        return {name: None if f is None else str(f) for name, f in folders.items()}

    def loss_weighting(self) -> dict[str, str]:
        """Each latent arm's denoiser loss weighting (``unweighted`` or ``Min-SNR-<gamma>``),
        for the results' header."""
        weights = {a.name: self.trained_with(a, "snr_gamma") for a in self.config.arms
                   if is_latent(a)}  # fmt: skip
        return {a: "unweighted" if g is None else f"Min-SNR-{g:g}" for a, g in weights.items()}

    def train(self, arm: Arm, vae: Mapping[str, Any], seed: int) -> dict[str, Any]:
        """Stage ``train:<arm>@<seed>``: the arm's own model (resumes from its checkpoint, or
        continues the model of a shorter arm of the same recipe: :meth:`continues`)."""
        from htd_plugins.backbones import checkpoint_dir, list_checkpoints

        key = self.arm_key(arm, vae, seed)
        name = f"train:{arm.name}@{seed}"
        folder = arm_folder(self.out, arm.name, seed) / "train"
        done = self.stages.get(name, key)
        if done is not None and Path(done["model_dir"]).is_dir():
            return done
        own_folder(folder, key)
        record = folder / "continued_from.json"  # kept: a killed continuation resumes itself
        continued = None if list_checkpoints(folder) else self.continues(arm, vae, seed)
        if continued is not None:  # its last checkpoint, as if this arm had been killed there
            other, step, path = continued
            with open(path, "rb") as src, atomic_open(checkpoint_dir(folder) / path.name) as dst:
                shutil.copyfileobj(src, dst)
            atomic_write_json(record, {"arm": other, "step": step})
            self.log(f"{name}: continues {other}@{seed} from its step {step} (the same recipe "
                     "but for the steps: the steps after it are trained here)")  # fmt: skip
        pipe = self.build_pipeline(arm, vae, seed)
        b = self.budget
        options = {"steps": b.steps, "seed": seed, "checkpoint_every": b.checkpoint_every,
                   "batch_size": b.batch_size, **self.fit(arm)}  # fmt: skip
        latent = is_latent(arm)  # a training-free backbone (collage) only saves its options
        what = f"{options['steps']} steps" if latent else "no training"
        self.log(f"{name}: {what} ({arm.backbone}, builders {arm.builders})")
        summary = pipe.fit(self.data.train, output_dir=str(folder), **options)
        keep = ("steps", "seconds", "steps_per_second", "final_loss", "model_dir", "resumed_from")
        result = {k: summary.get(k) for k in keep if k in summary}
        if record.is_file():
            result["continued_from"] = json.loads(record.read_text())
        if latent:
            self.log(
                f"{name}: {result.get('steps')} steps, {result.get('steps_per_second')} steps/s"
            )
        return self.stages.put(name, key, {**result, "key": key})

    def lineage(self, arm: Arm, vae: Mapping[str, Any], seed: int) -> str | None:
        """``arm``'s train key without its name and step count: arms that share it train one
        trajectory (the same batches, noise and learning rate at every step, warm-up included:
        :mod:`htd_plugins.backbones.ldm.loop`), so the shorter one's last checkpoint is the
        longer one's state at that step. None for a training-free arm."""
        if not is_latent(arm):
            return None
        b = self.budget
        fit = {k: v for k, v in keyed_fit(self.fit(arm)).items() if k != "steps"}
        return stage_key("lineage", vae["key"], self.bank_key, arm.builders, arm.backbone,
                         arm.options, b.preset, self.image_size, b.batch_size,
                         keyed_options(self.config.model), fit, seed, self.recipe(arm))  # fmt: skip

    def continues(self, arm: Arm, vae: Mapping[str, Any], seed: int) -> tuple | None:
        """The arm of this run whose model ``arm`` continues (a steps curve trains each step
        once): the same :meth:`lineage`, trained at this seed, its last checkpoint at fewer
        steps than ``arm``'s (the most such). Returns ``(its name, that step, the checkpoint
        path)``; None when there is none (a training-free arm has none)."""
        from htd_plugins.backbones import list_checkpoints

        mine, steps = self.lineage(arm, vae, seed), self.fit(arm).get("steps", self.budget.steps)
        found = []
        for o in self.config.arms:
            if mine is None or o.name == arm.name or self.lineage(o, vae, seed) != mine:
                continue
            if self.stages.finished(f"train:{o.name}@{seed}", self.arm_key(o, vae, seed)):
                for path in list_checkpoints(arm_folder(self.out, o.name, seed) / "train")[-1:]:
                    found.append((int(path.stem.split("-")[1]), o.name, path))
        step, other, path = max((f for f in found if f[0] < steps), default=(0, None, None))
        return (other, step, path) if other is not None else None

    def layouts(self) -> list[Any]:
        """The training layouts every arm and seed generates from (seeded by the first seed;
        cycled when more are asked)."""
        import numpy as np

        train = self.data.train
        n = self.budget.n_synthetic or len(train)
        order = np.random.default_rng(self.config.seed + 7).permutation(len(train)).tolist()
        return [train[order[i % len(train)]] for i in range(n)]

    def generate(self, arm: Arm, trained: Mapping[str, Any], seed: int) -> dict[str, Any]:
        """Stage ``generate:<arm>@<seed>``: writes ``.../seed-<seed>/synthetic`` (resumes per
        sample; a larger set grows a smaller one), keyed by the generation options it passes
        (the budget's, with ``seed``), so changing them regenerates; records the options the
        pipeline resolved and used."""
        from tqdm import tqdm

        from htd_core.dataset import Dataset, DatasetWriter
        from htd_core.generation import GENERATION_COLUMNS
        from htd_core.pipeline import Pipeline

        layouts = self.layouts()
        asked = self.budget.generation(seed)
        key = stage_key("generate", trained["key"], len(layouts), asked)
        name = f"generate:{arm.name}@{seed}"
        folder = arm_folder(self.out, arm.name, seed) / "synthetic"
        done = self.stages.get(name, key)
        if done is not None and folder.is_dir():
            return done
        # sample i depends on i alone (layouts cycle in one order; its seed is seed + i), so a
        # larger set grows a smaller one: the folder is keyed without the size (a folder that
        # holds more than asked is redone; one stamped with its size before this was kept too)
        manifest = folder / "manifest.csv"
        made = manifest.read_text().count("\n") - 1 if manifest.is_file() else 0
        if made > len(layouts):
            shutil.rmtree(folder)
        own_folder(folder, stage_key("generate", trained["key"], asked),
                   also=[stage_key("generate", trained["key"], made, asked)])  # fmt: skip
        pipe = Pipeline.from_pretrained(trained["model_dir"])
        options = pipe.generation_options(**asked)
        how = (f"{options.scheduler} {options.num_inference_steps} steps, guidance "
               f"{options.guidance_scale}" if is_latent(arm) else "no sampler")  # fmt: skip
        self.log(f"{name}: {len(layouts)} patches from training layouts, {how}")
        t0 = time.monotonic()
        with DatasetWriter(folder, layouts[0].class_map, GENERATION_COLUMNS) as writer:
            start = len(writer)
            if start:
                self.log(f"{name}: {start} samples kept (a killed run or a smaller set); "
                         f"resuming at sample {start} of {len(layouts)}")  # fmt: skip
            quiet = self.config.fit.get("progress", True) is False
            bar = tqdm(total=len(layouts), initial=start, desc=name, unit="img", file=sys.stderr,
                       disable=quiet)  # fmt: skip
            for sample in pipe.iter_generate(layouts, options, start=start):
                writer.write(sample)
                bar.update(1)
            bar.close()
        used = sorted({float(r["guidance_scale"]) for r in Dataset(folder).rows})
        result = {"path": str(folder), "n": len(layouts), "key": key,
                  "seconds": round(time.monotonic() - t0, 1), "options": options.to_dict(),
                  "guidance_used": used}  # fmt: skip
        return self.stages.put(name, key, result)
