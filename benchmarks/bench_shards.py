"""Shard folders (issue 25): read throughput against the PNG dataset folder, and the peak memory
of ``htd train`` from shards at two dataset sizes.

``read``: the same N synthetic patches written once as an ``htd sample`` PNG folder
(``htd_core.dataset``) and once as WebDataset shards (``htd_core.shards``), then read side by
side in one process, peers interleaved in each repeat, decoded to arrays:

- ``png folder``: ``Dataset(root)`` in order (one image + one mask file per sample);
- ``shards, in order``: ``iter(ShardDataset(root))`` (one tar per shard, read front to back);
- ``shards, stream``: ``ShardDataset.take`` micro-batch by micro-batch as training reads them
  (groups of shards shuffled in memory), process 0 of 1.

Prints samples/s per peer per repeat, the median, the ratio to the PNG folder, and ``uptime``'s
load before and after (the machine is shared: run it alone for figures to quote).

``memory``: writes N1 and N2 patches as shards, then runs ``htd train --data SHARDS`` (tiny
preset, the same steps and batch) in a fresh process per size and reads its peak RSS
(``ru_maxrss`` of the child); with ``--in-memory`` the same through the PNG folder (the tiles
sampler: every sample held in memory) for contrast. Streamed memory must be flat: the script
prints the ratio of the two peaks and exits 1 when it exceeds 1.10.

Run (timed, alone on the machine):
``python benchmarks/bench_shards.py read --n 20000 --size 64 --shard-size 1000 --repeats 5``
``python benchmarks/bench_shards.py memory --sizes 1000 20000 --size 32 --steps 200 --in-memory``

``resume`` (a check, not a timing): ``htd train --data SHARDS`` killed with SIGKILL after its
first checkpoint and rerun ends with the same weights as an uninterrupted run:
``python benchmarks/bench_shards.py resume --n 20000 --steps 40``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic(n: int, size: int):
    from htd_core.testing import synthetic_sample

    for i in range(n):
        yield synthetic_sample(size, seed=i)


def write_both(folder: Path, n: int, size: int, shard_size: int, png: bool = True) -> None:
    from htd_core.dataset import DatasetWriter
    from htd_core.shard_writer import ShardWriter

    cm = next(synthetic(1, size)).class_map
    with ShardWriter(folder / "shards", cm, shard_size) as shards:
        for s in synthetic(n, size):
            shards.write(s)
    if png:
        with DatasetWriter(folder / "png", cm) as writer:
            for s in synthetic(n, size):
                writer.write(s)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def read(args: argparse.Namespace) -> None:
    from htd_core.dataset import Dataset
    from htd_core.shards import ShardDataset

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_both(folder, args.n, args.size, args.shard_size)
        batch = 16

        def png() -> int:
            return sum(int(s.mask[0, 0]) >= 0 for s in Dataset(folder / "png"))

        def ordered() -> int:
            return sum(int(s.mask[0, 0]) >= 0 for s in ShardDataset(folder / "shards"))

        def stream() -> int:
            data = ShardDataset(folder / "shards")
            return sum(len(data.take(m, batch, 0, 1, 0)) for m in range(args.n // batch))

        peers = {"png folder": png, "shards, in order": ordered, "shards, stream": stream}
        print(f"load before: {uptime()}")
        rates: dict[str, list[float]] = {k: [] for k in peers}
        for r in range(args.repeats):
            for name, fn in peers.items() if r % 2 == 0 else reversed(peers.items()):
                start = time.perf_counter()
                count = fn()
                rates[name].append(count / (time.perf_counter() - start))
        print(f"load after:  {uptime()}")
        base = statistics.median(rates["png folder"])
        print(
            f"{args.n} patches of {args.size} px, shards of {args.shard_size}, {args.repeats} repeats"
        )
        for name, values in rates.items():
            med = statistics.median(values)
            runs = ", ".join(f"{v:.0f}" for v in values)
            print(
                f"{name:18s} median {med:8.0f} samples/s  ({runs})  ratio to png {med / base:.2f}x"
            )


def peak_rss(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of ``cmd`` in a fresh process."""
    env = {**os.environ, "HTD_THREADS": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    wrapper = (
        "import resource, subprocess, sys, json; "
        "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
        "print(json.dumps([r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], cwd=cwd, env=env,
                         capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - start
    code, kib = json.loads(out.stdout.strip().splitlines()[-1])
    if code:
        sys.exit(f"{' '.join(cmd)} exited {code}: {out.stderr[-2000:]}")
    return kib / 1024, seconds


def memory(args: argparse.Namespace) -> None:
    import yaml

    htd = str(Path(sys.executable).with_name("htd"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = folder / "pipe.yaml"
        config.write_text(yaml.safe_dump({
            "condition_builders": ["semantic_map"],
            "backbone": {"name": "controlnet_ldm", "preset": "tiny", "device": "cpu"},
            "fit": {"steps": args.steps, "vae_steps": 2, "batch_size": args.batch,
                    "checkpoint_every": max(args.steps // 2, 1), "progress": False,
                    "tensorboard": False},
        }))  # fmt: skip
        print(f"load before: {uptime()}")
        peaks = {}
        for n in args.sizes:
            write_both(folder / str(n), n, args.size, args.shard_size, png=args.in_memory)
            kinds = {"shards": folder / str(n) / "shards"}
            if args.in_memory:
                kinds["in memory (png folder)"] = folder / str(n) / "png"
            for kind, data in kinds.items():
                out = folder / f"run-{n}-{kind.split()[0]}"
                mib, secs = peak_rss([htd, "train", str(config), "--data", str(data), "--out",
                                      str(out), "--threads", "1"], folder)  # fmt: skip
                peaks[(n, kind)] = mib
                print(f"{n:7d} patches  {kind:24s} peak RSS {mib:8.1f} MiB  ({secs:.0f} s)")
        print(f"load after:  {uptime()}")
        small, large = min(args.sizes), max(args.sizes)
        ratio = peaks[(large, "shards")] / peaks[(small, "shards")]
        print(f"shards: peak RSS at {large} / at {small} patches = {ratio:.3f}")
        if ratio > 1.10:
            sys.exit(f"memory is not flat: {ratio:.3f} > 1.10")


def resume(args: argparse.Namespace) -> None:
    """``htd train --data SHARDS`` killed with SIGKILL after its first checkpoint, then rerun,
    ends with the same weights as an uninterrupted run (which it can only if it read the same
    samples after the checkpoint)."""
    import signal

    import yaml
    from safetensors.numpy import load_file

    htd = str(Path(sys.executable).with_name("htd"))
    env = {**os.environ, "HTD_THREADS": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_both(folder, args.n, args.size, args.shard_size, png=False)
        config = folder / "pipe.yaml"
        config.write_text(yaml.safe_dump({
            "condition_builders": ["semantic_map"],
            "backbone": {"name": "controlnet_ldm", "preset": "tiny", "device": "cpu"},
            "fit": {"steps": args.steps, "vae_steps": 2, "batch_size": 4, "progress": False,
                    "checkpoint_every": max(args.steps // 4, 1), "tensorboard": False},
        }))  # fmt: skip

        def train(out: str) -> subprocess.Popen:
            cmd = [htd, "train", str(config), "--data", str(folder / "shards"), "--out",
                   str(folder / out), "--threads", "1"]  # fmt: skip
            return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)

        if train("whole").wait():
            sys.exit("the uninterrupted run failed")
        run, checkpoints = train("cut"), folder / "cut" / "checkpoints"
        while not list(checkpoints.glob("step-*.pt")) and run.poll() is None:
            time.sleep(0.05)
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        killed = sorted(p.name for p in checkpoints.glob("step-*.pt"))
        if train("cut").wait():
            sys.exit("the resumed run failed")
        diffs = []
        for part in sorted((folder / "whole" / "model").rglob("*.safetensors")):
            a = load_file(part)
            b = load_file(folder / "cut" / "model" / part.relative_to(folder / "whole" / "model"))
            diffs += [k for k in a if not np.array_equal(a[k], b[k])]
        print(f"{args.n} patches: killed with checkpoints {killed}; resumed to step {args.steps}")
        print("final weights equal to the uninterrupted run's" if not diffs
              else f"weights differ: {diffs[:5]}")  # fmt: skip
        if diffs:
            sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    r = sub.add_parser("read", help="read throughput: PNG folder vs shards")
    r.add_argument("--n", type=int, default=20000)
    r.add_argument("--repeats", type=int, default=5)
    m = sub.add_parser("memory", help="peak RSS of htd train from shards at two sizes")
    m.add_argument("--sizes", type=int, nargs=2, default=[1000, 20000])
    m.add_argument("--steps", type=int, default=200)
    m.add_argument("--batch", type=int, default=4)
    m.add_argument("--in-memory", action="store_true", help="also the PNG folder, in memory")
    k = sub.add_parser("resume", help="htd train from shards: kill -9, resume, same weights")
    k.add_argument("--n", type=int, default=20000)
    k.add_argument("--steps", type=int, default=40)
    for p in (r, m, k):
        p.add_argument("--size", type=int, default=32, help="patch side in px")
        p.add_argument("--shard-size", type=int, default=1000)
    args = ap.parse_args(argv)
    if min(getattr(args, "sizes", [args.size])) < 1 or args.size < 16:
        ap.error("sizes must be >= 1 and --size >= 16")
    np.seterr(all="ignore")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    {"read": read, "memory": memory, "resume": resume}[args.what](args)


if __name__ == "__main__":
    main()
