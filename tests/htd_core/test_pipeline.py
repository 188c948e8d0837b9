"""Pipeline composition by object and by registered name, and YAML config errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from htd_core import ComposedConditionBuilder, Pipeline
from htd_core.errors import ConfigError, InputError
from htd_core.generation import GenerationOptions
from htd_core.testing import synthetic_sample


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_compose_by_name_and_object(builtin_manager):
    from htd_plugins.condition_builders.unconditional import UnconditionalBuilder

    pipe = Pipeline(condition_builders=["semantic_map", UnconditionalBuilder()])
    assert isinstance(pipe.condition_builder, ComposedConditionBuilder)
    conds = pipe.build_conditions([synthetic_sample(16)])
    assert conds[0].channels == ("map:tumor", "map:stroma", "map:normal")


def test_from_yaml(tmp_path, builtin_manager):
    path = write(
        tmp_path,
        "condition_builders:\n  - name: semantic_map\n    classes: [tumor, stroma, normal]\n  - unconditional\n"
        "fit: {max_steps: 3}\n",
    )
    pipe = Pipeline.from_config(path)
    assert pipe.stage_options == {"fit": {"max_steps": 3}}
    assert pipe.build_conditions([synthetic_sample(8)])[0].spatial.shape == (3, 8, 8)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "condition_builders: [semantic_mapp]\n",
            r"pipeline.yaml: condition_builders\[0\]: unknown condition builder 'semantic_mapp'. Did you mean 'semantic_map'\?",  # a name, not a mapping
        ),
        (
            "condition_builders:\n  - {name: semantic_map, clases: [a]}\n",
            r"condition_builders\[0\].clases: .*no option 'clases'. Did you mean 'classes'\?",
        ),
        (
            "condition_builderss: [semantic_map]\n",
            r"unknown section 'condition_builderss'. Did you mean 'condition_builders'\?",
        ),
        (
            "condition_builders:\n  - {classes: [a]}\n",
            r"condition_builders\[0\]: a component mapping needs a 'name' key",
        ),
        (
            "conditioners: [semantic_map]\n",
            r"section 'conditioners' is now called 'condition_builders'",
        ),
        ("sampler: [1, 2\n", r"not valid YAML"),
        ("- just a list\n", r"top level must be a mapping"),
        ("fit: 3\n", r"fit: expected a mapping"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path, builtin_manager, text, expected):
    with pytest.raises(ConfigError, match=expected):
        Pipeline.from_config(write(tmp_path, text))


def test_missing_file_and_missing_stage(tmp_path, builtin_manager):
    with pytest.raises(ConfigError, match="does not exist"):
        Pipeline.from_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="needs a backbone"):
        Pipeline(condition_builders=["semantic_map"]).fit()
    with pytest.raises(ConfigError, match="at least one evaluator"):
        Pipeline().evaluate([], [])


def test_fit_takes_a_split_and_save_pretrained_needs_registered_components(
    tmp_path, builtin_manager
):
    import numpy as np

    from htd_core import Backbone, create

    class Fake(Backbone):
        name, options = "fake", {}

        def fit(self, samples, builder, **options):
            self.seen = list(samples)
            return {"steps": 1}

        def generate(self, conditions, options):
            self.used = options
            return np.full((len(conditions), 8, 8, 3), options.seed % 256, np.uint8)

        def save(self, path):
            Path(path).mkdir(parents=True, exist_ok=True)

        @classmethod
        def load(cls, path, device=None):
            return cls()

    split = [synthetic_sample(8, seed=s) for s in range(3)]
    # the pipeline's generate: defaults (a YAML's section) batch 2 layouts per call
    pipe = Pipeline(condition_builders=["semantic_map"], backbone=Fake(),
                    stage_options={"generate": {"batch_size": 2, "guidance_scale": 1.0}})  # fmt: skip
    assert pipe.fit(split[:2]) == {"steps": 1} and pipe.backbone.seen == split[:2]
    # generation: one sample per layout, seeds seed + i, batches counted from layout 0
    out = pipe.generate(split, seed=10)
    assert [s.meta["seed"] for s in out] == [10, 11, 12]
    assert [int(s.image[0, 0, 0]) for s in out] == [10, 10, 12]  # batch of 2, then 1
    used = {"guidance_scale": 1.0, "scheduler": "ddim", "num_inference_steps": 25}
    assert all({k: s.meta[k] for k in used} == used for s in out)  # as used, per sample
    resumed = pipe.generate(split, seed=10, start=1)
    assert [s.meta["seed"] for s in resumed] == [11, 12]
    assert [int(s.image[0, 0, 0]) for s in resumed] == [11, 12]
    # the caller's options over the generate: defaults over GenerationOptions' defaults
    out = pipe.generate(split, seed=10, batch_size=3, num_inference_steps=4)
    assert [int(s.image[0, 0, 0]) for s in out] == [10, 10, 10]  # one batch of 3
    assert pipe.backbone.used == GenerationOptions(1.0, "ddim", 4, 3, 10)
    assert pipe.generation_options(GenerationOptions(seed=2)).guidance_scale == 2.0  # given whole
    with pytest.raises(
        InputError, match="no option 'num_steps'. Did you mean 'num_inference_steps'"
    ):
        pipe.generate(split, num_steps=2)
    with pytest.raises(InputError, match="batch_size=0"):
        pipe.generate(split, batch_size=0)
    # builders are saved by registered name; one built by hand is refused before writing
    builder = create("condition_builders", "semantic_map")
    hand = Pipeline(condition_builders=[builder], backbone=Fake())
    hand.save_pretrained(tmp_path / "m")
    assert "semantic_map" in (tmp_path / "m" / "pipeline.yaml").read_text()
    from htd_plugins.condition_builders.unconditional import UnconditionalBuilder

    by_hand = Pipeline(condition_builders=[UnconditionalBuilder()], backbone=Fake())
    with pytest.raises(ConfigError, match="not created from a registered name"):
        by_hand.save_pretrained(tmp_path / "n")
    assert not (tmp_path / "n").exists()
    with pytest.raises(InputError, match="not a saved pipeline"):
        Pipeline.from_pretrained(tmp_path / "nothing")


def test_fit_checks_output_dir_first_and_names_classes_no_sample_holds(tmp_path, builtin_manager):
    """``htd train`` with a class no sample holds trained an always-empty channel in silence;
    an output_dir that is a file or a user's folder failed only after the work."""
    import numpy as np

    from htd_core import Backbone, ClassMap, TissueSample
    from htd_core.coverage import EmptyClassWarning

    class Fake(Backbone):
        name, options, calls = "fake", {}, 0

        def fit(self, samples, builder, **options):
            Fake.calls += 1
            list(samples)
            return {"steps": 1}

        def generate(self, conditions, options):
            return np.zeros((len(conditions), 8, 8, 3), np.uint8)

        def save(self, path):
            pass

        @classmethod
        def load(cls, path, device=None):
            return cls()

    cm = ClassMap(("tumor", "stroma", "necrosis"))
    mask = np.zeros((8, 8), np.uint8)
    mask[:, 4:] = 1
    samples = [TissueSample(np.zeros((8, 8, 3), np.uint8), mask, cm, {}) for _ in range(3)]
    pipe = Pipeline(condition_builders=["semantic_map"], backbone=Fake())
    with pytest.warns(EmptyClassWarning, match=r"'necrosis' has no region in any of the 3 samples"):
        pipe.fit(samples)
    (tmp_path / "file").write_text("x")
    (tmp_path / "users").mkdir()
    (tmp_path / "users" / "important.txt").write_text("keep")
    for bad, message in (("file", "is a file"), ("users", "important.txt")):
        with pytest.raises(InputError, match=message):
            pipe.fit(samples, output_dir=str(tmp_path / bad))
    assert Fake.calls == 1 and (tmp_path / "file").read_text() == "x"
    with pytest.warns(EmptyClassWarning):
        pipe.fit(samples, output_dir=str(tmp_path / "run"))
    assert (tmp_path / "run" / "htd-output.json").is_file()
