"""``htd experiment``: the file, the budgets and every bad input, refused before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from htd_core.errors import ConfigError, InputError
from htd_plugins.experiment import BUDGETS, Experiment, get_budget, load_experiment
from htd_plugins.experiment.data import sample_splits

REPO = Path(__file__).resolve().parents[3]


def tile_folder(root: Path, names: list[str], two_classes: bool = True) -> Path:
    """Tiles of H&E-like noise with a left/right two-class mask (or one class)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in names:
        image = rng.integers(60, 230, (64, 64, 3), dtype=np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        if two_classes:
            mask[:, 32:] = 1
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    return root


def config(root: Path, **extra) -> dict:
    return {
        "name": "t",
        "data": {"sampler": "tiles", "options": {"root": str(root), "classes": ["a", "b"],
                 "rule": "heterogeneous"}, "train": {"match": "train_*"}, "test": {"match": "test_*"}},
        "arms": ["crop", "unconditional"], "budget": "tiny", **extra,
    }  # fmt: skip


def test_examples_parse_with_the_paper_arms(monkeypatch, tmp_path):
    monkeypatch.setenv("HTD_SHARED_DATA", str(tmp_path))  # parsing reads no data: works without it
    for name in ("glas", "wsss4luad"):
        cfg = load_experiment(REPO / "examples" / "experiments" / f"{name}.yaml")
        assert [a.name for a in cfg.arms] == ["unconditional", "semantic_map", "embedding", "crop"]
        assert cfg.data["train"] == {"split": "train"} and cfg.data["test"] == {"split": "test"}
        crop = cfg.arms[3].builders[1]
        assert crop == {"name": "crop", "placement": "outside", "max_fraction": 0.5, "min_size": 8}
        # two seeds: the `cpu` budget runs all arms and seeds within 2 h per dataset
        assert cfg.seeds == (0, 1) and "layout_adherence" in cfg.evaluators


def test_budgets_fix_steps_and_unknown_ones_are_refused():
    assert {"tiny", "demo", "cpu-quick", "cpu", "gpu"} <= set(BUDGETS)
    assert get_budget("cpu").steps > get_budget("cpu-quick").steps
    assert get_budget("gpu").preset == "paper" and get_budget("gpu").image_size is None  # native
    with pytest.raises(InputError, match=r"unknown budget 'cpu-quik'\. Did you mean 'cpu-quick'"):
        get_budget("cpu-quik")
    with pytest.raises(
        InputError, match="budget 'tiny' has no option 'stepz'. Did you mean 'steps'"
    ):
        get_budget("tiny", stepz=3)
    with pytest.raises(InputError, match="budget steps=0 must be an integer >= 1"):
        get_budget("tiny", steps=0)


def test_an_unregistered_arm_lists_the_registered_builders(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_experiment(config(tmp_path, arms=["crop", "cropp"]))
    text = str(err.value)
    assert "'cropp'" in text and "semantic_map" in text and "unconditional" in text
    assert "embedding" in text  # the paper arms too


def test_a_registered_builder_is_an_arm_of_its_own():
    cfg = load_experiment(config(Path("."), arms=["semantic_map", "unconditional"]))
    assert [a.builders for a in cfg.arms] == [["semantic_map"], ["unconditional"]]


def test_unknown_keys_and_evaluators_are_named(tmp_path):
    with pytest.raises(ConfigError, match="key .budgte. unknown. Did you mean .budget."):
        load_experiment({**config(tmp_path), "budgte": "cpu"})
    with pytest.raises(ConfigError, match=r"evaluators\[0\]: unknown evaluator .fid."):
        load_experiment(config(tmp_path, evaluators=["fid"]))


def test_figure_options_are_checked_and_relative_folders_resolved(tmp_path):
    (tmp_path / "ae").mkdir()
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**config(tmp_path), "figure": {"autoencoders": {"T": "./ae"}}}))
    cfg = load_experiment(path)
    assert cfg.figure == {"rows": 8, "autoencoders": {"T": str(tmp_path / "ae")}}
    with pytest.raises(ConfigError, match=r"figure.autoencoders.T=.*is not a folder"):
        load_experiment({**config(tmp_path), "figure": {"autoencoders": {"T": "/no/such"}}})
    with pytest.raises(ConfigError, match=r"figure.rows=0: give an integer >= 1"):
        load_experiment({**config(tmp_path), "figure": {"rows": 0}})
    with pytest.raises(ConfigError, match="figure key .row. unknown. Did you mean .rows.") as err:
        load_experiment({**config(tmp_path), "figure": {"row": 2}})
    assert str(err.value).count("<experiment>") == 1  # the file named once


def test_paths_in_the_file_are_relative_to_it_and_paths_given_with_o_to_the_shell(
    tmp_path, monkeypatch
):
    """``./`` and ``../`` in the file (data, arms, model, figure) are read from the file's
    folder; in a ``-o`` value, from the working folder, where the shell that typed it is."""
    (tmp_path / "exp").mkdir()
    (tmp_path / "ae").mkdir()
    (tmp_path / "exp" / "ae").mkdir()
    arm = {"name": "crop_ae", "builders": ["semantic_map"], "options": {"autoencoder": "../ae"}}
    path = tmp_path / "exp" / "e.yaml"
    path.write_text(yaml.safe_dump({**config(tmp_path), "arms": ["crop", arm],
                                    "model": {"autoencoder": "../ae"},
                                    "figure": {"autoencoders": {"T": "./ae"}}}))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    cfg = load_experiment(path)
    assert cfg.arms[1].options == {"autoencoder": str(tmp_path / "ae")}
    assert cfg.model == {"autoencoder": str(tmp_path / "ae")}
    assert cfg.figure["autoencoders"] == {"T": str(tmp_path / "exp" / "ae")}
    given = {"arms": [{**arm, "options": {"autoencoder": "./ae"}}], "model.autoencoder": "./ae",
             "figure": {"autoencoders": {"T": "./ae"}}}  # fmt: skip
    cfg = load_experiment(path, given)  # cwd is tmp_path: ./ae is tmp_path/ae, not exp/ae
    assert cfg.arms[0].options == {"autoencoder": str(tmp_path / "ae")}
    assert cfg.model == {"autoencoder": str(tmp_path / "ae")}
    assert cfg.figure["autoencoders"] == {"T": str(tmp_path / "ae")}


def test_a_source_image_in_both_splits_is_named(tmp_path):
    root = tile_folder(tmp_path / "tiles", ["train_1", "train_2", "test_1"])
    cfg = config(root)
    cfg["data"]["test"] = {"match": "train_2*"}  # train_2 is in both
    with pytest.raises(InputError, match=r"share 1 source image\(s\)") as err:
        sample_splits(load_experiment(cfg).data, 32, 10, 10, 0)
    from htd_core.images import opaque_id

    assert opaque_id("train_2") in str(err.value)  # named by its opaque id, never the file name


def test_a_dataset_without_heterogeneous_patches_says_what_was_scanned(tmp_path):
    root = tile_folder(tmp_path / "tiles", ["train_1", "train_2", "test_1"], two_classes=False)
    with pytest.raises(
        InputError,
        match=r"data.train: 0 samples: 2 tile\(s\) of .* read \(taken whole\); every window was "
        r"rejected by CompositionRule\(mode='heterogeneous', min_frac=0.2",
    ):
        sample_splits(load_experiment(config(root)).data, 32, 10, 10, 0)


def test_bad_output_folder_is_refused_before_any_data_is_read(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    cfg = config(tmp_path / "no-such-folder")  # would fail when read: the folder check comes first
    with pytest.raises(InputError, match="already holds files htd did not write"):
        Experiment(cfg, output_dir=user)
    assert (user / "notes.txt").read_text() == "keep"


def test_cli_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    from htd_core.cli import main

    good = tmp_path / "e.yaml"
    root = tile_folder(tmp_path / "tiles", ["train_1", "test_1"])
    import yaml

    good.write_text(yaml.safe_dump(config(root)))
    for argv, needle in (
        ([str(tmp_path / "missing.yaml")], "does not exist"),
        ([str(good), "--budget", "huge"], "unknown budget 'huge'"),
    ):
        code = main(["experiment", *argv, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_misspelled_arm_option_is_refused_before_any_data_is_read(tmp_path):
    arm = {"name": "big_crops", "builders": ["semantic_map", {"name": "crop", "d_bse": 120}]}
    cfg = config(tmp_path / "no-such-folder", arms=[arm])
    with pytest.raises(ConfigError, match=r"d_bse"):
        Experiment(cfg, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_evaluator_subset_is_seeded_ordered_and_capped():
    from htd_core.evaluation import subset

    rows = list(range(50))
    picked = subset(rows, 12, seed=0)
    assert len(picked) == 12 and picked == sorted(picked) and len(set(picked)) == 12
    assert subset(rows, 12, seed=0) == picked
    assert subset(rows, 12, seed=1) != picked
    assert subset(rows, None, seed=0) is rows and subset(rows, 50, seed=0) is rows


def test_the_privacy_table_says_how_many_patches_each_arm_had_audited():
    from htd_plugins.experiment.results import markdown

    feature = {"image": {"unmasked": {"fraction_below": 0.0}},
               "crop": {"unmasked": {"fraction_below": 0.25}}}  # fmt: skip
    results = {
        "name": "x", "data": "d", "data_key": "k", "seeds": [0], "orderings": [],
        "budget": {"name": "cpu", "preset": "small", "image_size": 64, "steps": 2},
        "autoencoder": {"steps": 2}, "machine": {"platform": "p", "cpus": 2,
                                                 "torch_threads": 1, "gpu": None,
                                                 "load_average": [0.0]},
        "arms": {"crop": {0: {"steps": 2}}},
        "generated": {"crop": {0: {"n": 900, "options": {"guidance_scale": 2.0, "scheduler": "ddim",
                                                         "num_inference_steps": 2}}}},
        "scores": {"privacy": {"crop": {0: {"feature": feature, "n_synthetic": 500,
                                            "encoder": "efficientnet_lite0"}}}},
    }  # fmt: skip
    md = markdown(results, None)
    assert "| crop | 0.000 | 0.250 | 500 | efficientnet_lite0 |" in md
    assert "n audited" in md and "900 patches per arm" in md


def test_orderings_do_not_depend_on_the_order_the_encoders_were_stored_in():
    from htd_plugins.experiment.claims import orderings

    def fd(order):
        encoders = {k: {"fd": v, "kid": v / 100, "label": k.upper()} for k, v in order}
        return {"frechet": {a: {0: {"encoders": encoders}}
                            for a in ("crop", "embedding", "unconditional")}}  # fmt: skip

    arms = ["unconditional", "embedding", "crop"]
    fresh = orderings(fd([("inception_fid", 1.0), ("efficientnet_lite0", 2.0)]), arms)
    reloaded = orderings(fd([("efficientnet_lite0", 2.0), ("inception_fid", 1.0)]), arms)
    assert fresh == reloaded and "EFFICIENTNET_LITE0" in fresh[0]["claim"]
    assert "(point values, no interval)" in fresh[0]["verdict"]  # one seed, no resamples


def test_bad_generation_options_are_refused_before_any_data_is_read(tmp_path):
    """A scheduler the backbone does not have, or guidance for a model trained without a null
    branch, fails when the experiment is built (before the data, the autoencoder, training)."""
    root = tmp_path / "no-such-folder"  # read only if the checks passed
    with pytest.raises(ConfigError, match=r"arm 'crop'.*scheduler='dpm'"):
        Experiment(config(root, budget_options={"scheduler": "dpm"}), output_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match=r"budget_options.guidance_scale.*condition_dropout=0"):
        Experiment(config(root, model={"condition_dropout": 0.0}), output_dir=tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_one_arm_given_as_a_string_is_one_arm():
    cfg = load_experiment(config(Path("."), arms="crop"))
    assert [a.name for a in cfg.arms] == ["crop"]


def test_a_new_experiment_failing_before_any_result_leaves_nothing(tmp_path):
    """Issue 27: a failed run left a marked output folder (and its log) behind."""
    root = tile_folder(tmp_path / "tiles", ["train_1", "train_2", "test_1"], two_classes=False)
    out = tmp_path / "runs" / "exp"
    experiment = Experiment(config(root), output_dir=out, log=lambda text: None)
    with pytest.raises(InputError, match="data.train: 0 samples"):
        experiment.run()
    assert not (tmp_path / "runs").exists()


def test_device_and_progress_reach_the_run_but_no_stage_key(tmp_path, capsys):
    """`htd experiment --device/--no-progress` set the models' device and the fits' progress,
    which say where and how visibly a run goes: no stage key holds them, so a rerun with
    another device resumes; a device this machine lacks is refused before any work."""
    from htd_core.cli import main
    from htd_plugins.experiment.stages import keyed_options

    options = {"device": "cpu", "progress": False, "preset": "tiny", "steps": 3}
    assert keyed_options(options) == {"preset": "tiny", "steps": 3}
    cfg = load_experiment(config(tmp_path), {"model.device": "cpu", "fit.progress": False})
    assert cfg.model == {"device": "cpu"} and cfg.fit == {"progress": False}
    code = main(["experiment", str(tmp_path / "e.yaml"), "--device", "no-device"])
    assert code == 2 and "--device 'no-device' is not a torch device" in capsys.readouterr().err


def test_the_gpu_budget_without_a_gpu_warns_before_any_work(tmp_path, monkeypatch):
    """The paper-sized budget on a machine without CUDA says so in its first lines (it would
    take days), before the data stage."""
    from htd_plugins.experiment import runner

    cfg = config(tile_folder(tmp_path / "tiles", ["train_a", "test_a"]))
    cfg["data"]["options"]["patch_size"] = 32
    logged: list[str] = []
    exp = Experiment(cfg, budget="gpu", output_dir=tmp_path / "out", log=logged.append)

    class Stop(Exception):
        pass

    def stop(self):
        raise Stop

    monkeypatch.setattr(runner, "_cuda", lambda: False)
    monkeypatch.setattr(runner.Experiment, "load_data", stop)
    with pytest.raises(Stop):
        exp._run_stages()
    assert any("no GPU was found" in line and "--budget cpu" in line for line in logged)
    monkeypatch.setattr(runner, "_cuda", lambda: True)
    logged.clear()
    with pytest.raises(Stop):
        exp._run_stages()
    assert not any("no GPU" in line for line in logged)


def test_an_error_in_a_value_given_with_o_names_the_option(tmp_path):
    """A bad value set on the command line is traced to ``-o``, not only to the file."""
    with pytest.raises(ConfigError, match=r"^<experiment> \(-o seeds\): seeds: 'a' is not"):
        load_experiment(config(tmp_path), {"seeds": ["a"]})
    with pytest.raises(ConfigError, match=r"^<experiment> \(-o arms\): arms\[0\]: arm 'cropp'"):
        load_experiment(config(tmp_path), {"arms": ["cropp"]})
    with pytest.raises(ConfigError, match=r"^<experiment> \(-o figure\): figure key 'row'"):
        load_experiment(config(tmp_path), {"figure.row": 1})
    with pytest.raises(ConfigError, match=r"^<experiment> \(-o budget_options\): budget_options: "
                       r"budget steps='a' must be an integer >= 1"):  # fmt: skip
        load_experiment(config(tmp_path), {"budget_options.steps": "a"})
    with pytest.raises(ConfigError, match=r"^<experiment>: budget_options: .*no option 'stepz'"):
        load_experiment({**config(tmp_path), "budget_options": {"stepz": 3}})
    with pytest.raises(ConfigError, match=r"^<experiment>: seeds: 'a'"):  # from the file
        load_experiment({**config(tmp_path), "seeds": ["a"]}, {"arms": ["crop"]})
