"""Generation settings are call arguments, decided in one place (``Pipeline.generation_options``),
passed whole to the backbone and recorded exactly as used; a model folder stores *defaults*
only, never read by the backbone itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from htd_core import Backbone, GenerationOptions, Pipeline
from htd_core.errors import InputError
from htd_core.testing import synthetic_sample


class Recorder(Backbone):
    """Generates flat images and remembers every GenerationOptions it was given."""

    name, options = "recorder", {}

    def __init__(self) -> None:
        self.calls: list[GenerationOptions] = []

    def fit(self, samples, builder, **options):
        return {"steps": 0}

    def generate(self, conditions, options):
        self.calls.append(options)
        return np.full((len(conditions), 8, 8, 3), options.seed % 256, np.uint8)

    def save(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)

    @classmethod
    def load(cls, path, device=None):
        return cls()


def test_the_backbone_gets_the_resolved_options_whole_and_the_meta_records_them(builtin_manager):
    layouts = [synthetic_sample(8, seed=s) for s in range(3)]
    backbone = Recorder()
    pipe = Pipeline(condition_builders=["semantic_map"], backbone=backbone,
                    stage_options={"generate": {"guidance_scale": 3.5, "num_inference_steps": 7}})  # fmt: skip
    out = pipe.generate(layouts, seed=4, scheduler="dpmsolver++", batch_size=2)
    # defaults from the pipeline's generate: section, the caller's values over them
    assert backbone.calls == [
        GenerationOptions(3.5, "dpmsolver++", 7, 2, seed=4),
        GenerationOptions(3.5, "dpmsolver++", 7, 2, seed=6),  # second batch: seed + 2
    ]
    for i, s in enumerate(out):
        assert (s.meta["seed"], s.meta["guidance_scale"]) == (4 + i, 3.5)
        assert (s.meta["scheduler"], s.meta["num_inference_steps"]) == ("dpmsolver++", 7)
    # unconditional: null conditions are never guided: resolved, passed and recorded as 1
    null = pipe.generate(layouts[:1], unconditional=True)
    assert null[0].meta["guidance_scale"] == 1.0 and backbone.calls[-1].guidance_scale == 1.0


def test_bad_or_unknown_generation_options_name_the_option(builtin_manager):
    pipe = Pipeline(condition_builders=["semantic_map"], backbone=Recorder())
    with pytest.raises(InputError, match="num_inference_steps=0 must be an integer >= 1"):
        pipe.generation_options(num_inference_steps=0)
    with pytest.raises(InputError, match="has no option 'guidance'. Did you mean 'guidance_scale'"):
        pipe.generation_options(guidance=2.0)
    with pytest.raises(InputError, match="guidance_scale=-1 must be a finite number >= 1"):
        GenerationOptions(guidance_scale=-1)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny controlnet_ldm trained 2 steps, its pipeline YAML asking guidance 3 by default."""
    from htd_core.plugins import PluginManager, set_plugin_manager

    previous = set_plugin_manager(PluginManager(autoload=True))
    try:
        folder = tmp_path_factory.mktemp("generation")
        pipe = Pipeline(condition_builders=["semantic_map"],
                        backbone={"name": "controlnet_ldm", "preset": "tiny"},
                        stage_options={"generate": {"guidance_scale": 3.0, "num_inference_steps": 2}})  # fmt: skip
        samples = [synthetic_sample(16, seed=s) for s in range(4)]
        summary = pipe.fit(samples, output_dir=str(folder / "run"), steps=2, progress=False)
        yield Path(summary["model_dir"]), samples
    finally:
        set_plugin_manager(previous)


def test_a_model_folder_holds_defaults_only_and_the_caller_decides(tiny_model, builtin_manager):
    model, samples = tiny_model
    saved = json.loads((model / "htd_config.json").read_text())["options"]
    assert not {"guidance_scale", "scheduler", "num_inference_steps", "batch_size"} & set(saved)
    pipe = Pipeline.from_pretrained(model)
    assert pipe.generation_options().guidance_scale == 3.0  # the folder's default, named so
    assert pipe.generation_options(guidance_scale=1.5).guidance_scale == 1.5
    default = pipe.generate(samples[:1], seed=0)[0]
    asked = pipe.generate(samples[:1], seed=0, guidance_scale=1.0)[0]
    assert default.meta["guidance_scale"] == 3.0 and asked.meta["guidance_scale"] == 1.0
    assert not np.array_equal(default.image, asked.image)  # the value recorded is the one used


def test_htd_generate_unconditional_records_no_guidance(tiny_model, builtin_manager, tmp_path):
    """``htd generate --unconditional`` used to record the model's guidance (2.0) in the
    manifest while none was applied."""
    from htd_core.cli import main
    from htd_core.dataset import DatasetWriter

    model, samples = tiny_model
    layouts = tmp_path / "layouts"
    with DatasetWriter(layouts, samples[0].class_map) as writer:
        for s in samples[:2]:
            writer.write(s)
    out = tmp_path / "uncond"
    code = main(["generate", str(model), "--out", str(out), "--dataset", str(layouts), "--unconditional",
                 "--threads", "1"])  # fmt: skip
    assert code == 0
    from htd_core.dataset import Dataset

    rows = Dataset(out).rows
    assert [float(r["guidance_scale"]) for r in rows] == [1.0, 1.0]
    assert {r["num_inference_steps"] for r in rows} == {"2"}  # the folder's default, recorded
    assert json.loads((out / "generate.json").read_text())["generation"]["guidance_scale"] == 1.0
    # the same command again: the finished output is resumed at its end, nothing is redone
    assert main(["generate", str(model), "--out", str(out), "--dataset", str(layouts), "--unconditional",
                 "--threads", "1"]) == 0  # fmt: skip
    assert len(Dataset(out).rows) == 2
    # guidance asked for with --unconditional: refused before anything is written
    other = tmp_path / "asked"
    code = main(["generate", str(model), "--out", str(other), "--dataset", str(layouts), "--unconditional",
                 "--guidance", "3", "--threads", "1"])  # fmt: skip
    assert code == 2 and not other.exists()


def test_guidance_is_finite_and_at_least_one_and_unconditional_takes_none(builtin_manager):
    pipe = Pipeline(condition_builders=["semantic_map"], backbone=Recorder())
    for bad in (0.5, float("inf"), float("nan")):
        with pytest.raises(InputError, match="guidance_scale=.* must be a finite number >= 1"):
            pipe.generation_options(guidance_scale=bad)
    assert pipe.generation_options(unconditional=True).guidance_scale == 1.0  # default 2: none
    with pytest.raises(InputError, match="unconditional generation: a null condition has nothing"):
        pipe.generation_options(guidance_scale=3.0, unconditional=True)


def test_a_finished_generation_resumed_at_its_end_yields_nothing(builtin_manager):
    layouts = [synthetic_sample(8, seed=s) for s in range(3)]
    backbone = Recorder()
    pipe = Pipeline(condition_builders=["semantic_map"], backbone=backbone)
    assert list(pipe.iter_generate(layouts, start=3, batch_size=2)) == []  # 3 is not a batch edge
    assert [s.meta["seed"] for s in pipe.iter_generate(layouts, start=2, batch_size=2)] == [2]
