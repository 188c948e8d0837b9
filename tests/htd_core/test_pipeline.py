"""Pipeline composition by object and by registered name, and YAML config errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from htd_core import ComposedConditionBuilder, Pipeline
from htd_core.errors import ConfigError
from htd_core.testing import synthetic_sample


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_compose_by_name_and_object(builtin_manager):
    from htd_plugins.conditioners.unconditional import UnconditionalBuilder

    pipe = Pipeline(conditioners=["semantic_map", UnconditionalBuilder()])
    assert isinstance(pipe.condition_builder, ComposedConditionBuilder)
    conds = pipe.build_conditions([synthetic_sample(16)])
    assert conds[0].channels == ("map:tumor", "map:stroma", "map:normal")


def test_from_yaml(tmp_path, builtin_manager):
    path = write(
        tmp_path,
        "conditioners:\n  - name: semantic_map\n    classes: [tumor, stroma, normal]\n  - unconditional\n"
        "fit: {max_steps: 3}\n",
    )
    pipe = Pipeline.from_config(path)
    assert pipe.stage_options == {"fit": {"max_steps": 3}}
    assert pipe.build_conditions([synthetic_sample(8)])[0].spatial.shape == (3, 8, 8)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "conditioners: [semantic_mapp]\n",
            r"pipeline.yaml: conditioners\[0\].name: unknown condition builder 'semantic_mapp'. Did you mean 'semantic_map'\?",
        ),
        (
            "conditioners:\n  - {name: semantic_map, clases: [a]}\n",
            r"conditioners\[0\].clases: .*no option 'clases'. Did you mean 'classes'\?",
        ),
        (
            "conditionners: [semantic_map]\n",
            r"unknown section 'conditionners'. Did you mean 'conditioners'\?",
        ),
        (
            "conditioners:\n  - {classes: [a]}\n",
            r"conditioners\[0\]: a component mapping needs a 'name' key",
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
        Pipeline(conditioners=["semantic_map"]).fit()
    with pytest.raises(ConfigError, match="at least one evaluator"):
        Pipeline().evaluate([], [])
