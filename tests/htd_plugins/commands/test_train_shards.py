"""Training from shards: ``htd sample --shard-size`` (resumed) then ``htd train --data``; two
processes under ``accelerate launch`` read disjoint samples; a run killed with SIGKILL (one
process, or every process of a 2-process launch) resumes at the same sample; shards of another
class map than the model's are named (bad shards: tests/test_bad_inputs.py)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from htd_core.cli import main
from htd_core.shard_writer import ShardWriter
from htd_core.testing import synthetic_sample
from htd_core.types import ClassMap, TissueSample

from .test_train import write_config, write_tiles

#: Trains a tiny model from shards through Pipeline.fit (the path of `htd train --data`),
#: logging the sample keys of every micro-batch each process draws to LOG-<rank>.jsonl.
SCRIPT = """
import json, os, sys
from htd_core.pipeline import Pipeline
from htd_core.shards import ShardDataset
root, out, log, steps = sys.argv[1:5]

class Logged(ShardDataset):
    def take(self, micro_index, count, rank, world, seed):
        drawn = super().take(micro_index, count, rank, world, seed)
        with open(f"{log}-{rank}.jsonl", "a") as fh:
            fh.write(json.dumps([os.getpid(), micro_index, [k for k, _ in drawn]]) + "\\n")
            fh.flush()
            os.fsync(fh.fileno())
        return drawn

pipe = Pipeline.from_config({"condition_builders": ["semantic_map"],
                             "backbone": {"name": "controlnet_ldm", "preset": "tiny",
                                          "device": "cpu"}})
pipe.fit(Logged(root), output_dir=out, steps=int(steps), vae_steps=2, batch_size=2,
         checkpoint_every=2, progress=False, tensorboard=False, ema_decay=0.9)
"""


def write_shards(root: Path, n: int, shard_size: int, classes=("tumor", "stroma", "normal")):
    with ShardWriter(root, ClassMap(classes), shard_size) as w:
        for i in range(n):
            s = synthetic_sample(16, classes=classes, seed=i)
            w.write(TissueSample(s.image, s.mask, s.class_map, {"slide_id": f"s{i % 3}"}))
    return root


def env() -> dict[str, str]:
    return {**os.environ, "HTD_THREADS": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_log(path: Path) -> list[tuple[int, int, list[str]]]:
    return [tuple(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def test_sample_shards_resume_then_train(tmp_path, builtin_manager, capsys):
    from htd_core.shards import ShardDataset

    tiles = write_tiles(tmp_path / "tiles", n=12)
    config = write_config(tmp_path / "pipe.yaml", tiles)

    def sample(out: str, *extra: str) -> int:
        return main(["sample", "tiles", "--out", str(tmp_path / out), "-o", f"root={tiles}",
                     "--no-progress", "-o", "classes=[tumor, stroma, normal]", *extra])  # fmt: skip

    assert sample("whole", "--shard-size", "5") == 0
    assert sorted(p.name for p in (tmp_path / "whole").glob("*.tar")) == [
        f"shard-00000{i}.tar" for i in range(3)
    ]
    assert sample("parts", "--shard-size", "5", "--limit", "7") == 0  # stopped, then resumed
    assert sample("parts", "--shard-size", "5") == 0
    whole, parts = list(ShardDataset(tmp_path / "whole")), list(ShardDataset(tmp_path / "parts"))
    assert [s.meta for s in parts] == [s.meta for s in whole] and len(whole) == 12
    assert (tmp_path / "whole" / "contact_sheet.png").is_file()
    capsys.readouterr()
    assert sample("whole") == 2  # a shard folder resumes only as shards
    assert "holds shards: rerun with --shard-size" in capsys.readouterr().err
    assert main(["train", str(config), "--data", str(tmp_path / "whole"), "--out",
                 str(tmp_path / "run")]) == 0  # fmt: skip
    assert (tmp_path / "run" / "model" / "pipeline.yaml").is_file()


def test_shards_of_another_class_map_than_the_model_are_named(tmp_path):
    from htd_core.pipeline import Pipeline
    from htd_core.shards import ShardDataset

    pipe = Pipeline.from_config({"condition_builders": ["semantic_map"],
                                 "backbone": {"name": "controlnet_ldm", "preset": "tiny"}})  # fmt: skip
    tiny = {"steps": 1, "vae_steps": 1, "batch_size": 2, "progress": False, "tensorboard": False}
    pipe.fit(ShardDataset(write_shards(tmp_path / "a", 6, 3)), **tiny)
    other = write_shards(tmp_path / "b", 6, 3, classes=("tumor", "necrosis", "normal"))
    with pytest.raises(
        Exception, match=rf"{other} holds classes \['tumor', 'necrosis'.*trained on"
    ):
        pipe.fit(ShardDataset(other), **tiny)


def test_two_processes_under_accelerate_launch_read_disjoint_samples(tmp_path):
    shards = write_shards(tmp_path / "shards", 40, 5)  # 8 shards: 4 per process, 20 samples each
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
              "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", "--main_process_port", str(free_port())]  # fmt: skip
    run = subprocess.run(
        [*launch, str(script), str(shards), str(tmp_path / "run"), str(tmp_path / "seen"), "4"],
        env=env(), capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    seen = [read_log(tmp_path / f"seen-{rank}.jsonl") for rank in (0, 1)]
    used = [{k for _, micro, ks in log if micro < 4 for k in ks} for log in seen]
    assert len(used[0]) == len(used[1]) == 8  # 4 steps x 2 samples, no repeat
    assert not used[0] & used[1]
    from htd_core.pipeline import Pipeline

    loaded = Pipeline.from_pretrained(tmp_path / "run" / "model")
    assert loaded.backbone.class_map.names == ("tumor", "stroma", "normal")


STEPS = 16


@pytest.mark.parametrize("processes", [1, 2])
def test_killed_run_resumes_at_the_same_sample(tmp_path, processes):
    """SIGKILL after the first checkpoint (of one process, or of a 2-process `accelerate
    launch`, every process at once), then the same command: each process's stream continues
    at the checkpoint's step with exactly the samples an uninterrupted run draws."""
    shards = write_shards(tmp_path / "shards", 30, 5)  # 6 shards: 3 per process at 2
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    launch = [sys.executable]
    if processes > 1:
        launch += ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(processes), "--num_machines", "1", "--mixed_precision", "no",
                   "--dynamo_backend", "no", "--main_process_port", str(free_port())]  # fmt: skip

    def start() -> subprocess.Popen:  # the same command both times
        cmd = [*launch, str(script), str(shards), str(tmp_path / "cut"), str(tmp_path / "cut"),
               str(STEPS)]  # fmt: skip
        return subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    from htd_core.shards import ShardDataset

    data = ShardDataset(shards)  # what an uninterrupted run draws: a function of (seed, step)
    expected = {
        (rank, micro): [k for k, _ in data.take(micro, 2, rank, processes, 0)]
        for rank in range(processes)
        for micro in range(STEPS + 1)
    }
    run = start()
    checkpoints = tmp_path / "cut" / "checkpoints"
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("step-*.pt")) and run.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.02)
    import psutil  # accelerate's dependency

    launcher = psutil.Process(run.pid)  # torch's launcher starts each rank in its own session,
    procs = [launcher, *launcher.children(recursive=True)]  # so kill -9 each process
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    run.wait()
    psutil.wait_procs(procs, timeout=30)
    done = max(int(p.stem.split("-")[1]) for p in checkpoints.glob("step-*.pt"))
    assert done < STEPS, "the run ended before it was killed"
    resumed = start()
    assert resumed.wait(timeout=400) == 0, resumed.stderr.read().decode()[-3000:]
    for rank in range(processes):
        log = read_log(tmp_path / f"cut-{rank}.jsonl")
        pids = list(dict.fromkeys(pid for pid, _, _ in log))
        assert len(pids) == 2, f"rank {rank}: {len(pids)} process(es) drew, not killed + resumed"
        after = [(micro, ks) for pid, micro, ks in log if pid == pids[1]]
        assert after[0][0] == done  # the resumed stream starts at the checkpoint's step
        for _, micro, ks in log:  # either process drew exactly what the uninterrupted run drew
            assert ks == expected[(rank, micro)]
        assert {micro for micro, _ in after} >= set(range(done, STEPS))


def test_checkpoint_records_the_stream_and_another_process_count_warns(tmp_path):
    import torch

    from htd_core.pipeline import Pipeline
    from htd_core.shards import ShardDataset
    from htd_plugins.backbones.ldm.checkpoint import list_checkpoints

    data = ShardDataset(write_shards(tmp_path / "sh", 6, 3))
    run = {"output_dir": str(tmp_path / "run"), "vae_steps": 1, "batch_size": 2,
           "gradient_accumulation_steps": 2, "progress": False, "tensorboard": False}  # fmt: skip

    def pipe():
        return Pipeline.from_config({"condition_builders": ["semantic_map"],
                                     "backbone": {"name": "controlnet_ldm", "preset": "tiny"}})  # fmt: skip

    pipe().fit(data, steps=2, **run)
    path = list_checkpoints(tmp_path / "run")[-1]
    state = torch.load(path, weights_only=True)
    assert state["stream"] == {"processes": 1, "micro_batches": 4}
    state["stream"]["processes"] = 2  # as if it had run under accelerate launch on 2
    torch.save(state, path)
    with pytest.warns(UserWarning, match=r"step 2, 2 process\(es\)\) with 1: .*resume with 2"):
        pipe().fit(data, steps=3, **run)
