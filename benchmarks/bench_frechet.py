"""Frechet distance: htd (Cholesky, triangular products, eigenvalues) vs pytorch-fid (``sqrtm``).

Both compute FD from the same features, d = 2048 (Inception pool3 width), N = 5000 per set,
in one run; prints both values, their relative difference and the speed ratio: the median of
``--repeats`` runs of each (alternating), with the 1-minute load average before and after.
A speed ratio is only meaningful on a quiet machine (load well below the core count).

The features are synthetic but shaped like Inception's: non-negative (post-ReLU), correlated,
full rank. Real Inception features of 2 x 5000 tiles would take hours to embed on this CPU.

    python benchmarks/bench_frechet.py [--n 5000] [--d 2048] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def make_features(n: int, d: int, shift: float, seed: int) -> np.ndarray:
    """Non-negative correlated features: ReLU of a random linear map of Gaussians."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(1234).standard_normal((d, d)) / np.sqrt(d)
    z = rng.standard_normal((n, d)) * (1.0 + 0.2 * shift) + shift
    return np.maximum(z @ mix + 0.5, 0.0).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from pytorch_fid.fid_score import calculate_frechet_distance

    from htd_plugins.evaluators.distance import fd_math

    load_before = os.getloadavg()[0]
    real = make_features(args.n, args.d, 0.0, seed=0)
    fake = make_features(args.n, args.d, 0.15, seed=1)
    print(f"features: 2 x {args.n} x {args.d} float32 (ReLU of correlated Gaussians)")

    # statistics: htd streams float64 moments; pytorch-fid uses np.mean / np.cov
    start = time.perf_counter()
    stats_ref = [
        (x.mean(0), np.cov(x, rowvar=False))
        for x in (real.astype(np.float64), fake.astype(np.float64))
    ]
    t_stats_ref = time.perf_counter() - start
    start = time.perf_counter()
    stats_htd = []
    for x in (real, fake):
        moments = fd_math.RunningMoments()
        for batch in np.array_split(x, 10):  # streamed, as the evaluator does
            moments.update(batch)
        stats_htd.append(moments.statistics())
    t_stats_htd = time.perf_counter() - start
    cov_err = max(
        float(np.abs(a[1] - b[1]).max() / np.abs(b[1]).max())
        for a, b in zip(stats_htd, stats_ref, strict=True)
    )

    # the distance itself, both from the same (numpy) statistics
    (mu1, s1), (mu2, s2) = stats_ref
    timings: dict[str, list[float]] = {"htd": [], "pytorch-fid": []}
    cpu: dict[str, list[float]] = {"htd": [], "pytorch-fid": []}  # this process's CPU time
    values: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, fn in (
            ("pytorch-fid", lambda: float(calculate_frechet_distance(mu1, s1, mu2, s2))),
            ("htd", lambda: fd_math.frechet_distance(mu1, s1, mu2, s2)),
        ):
            start, start_cpu = time.perf_counter(), time.process_time()
            values[name] = fn()
            timings[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    (hm1, hs1), (hm2, hs2) = stats_htd
    streamed = fd_math.frechet_distance(hm1, hs1, hm2, hs2)
    rel = abs(values["htd"] - values["pytorch-fid"]) / abs(values["pytorch-fid"])
    rel_streamed = abs(streamed - values["pytorch-fid"]) / abs(values["pytorch-fid"])
    t_htd, t_ref = float(np.median(timings["htd"])), float(np.median(timings["pytorch-fid"]))
    load = (load_before, os.getloadavg()[0])
    cores = os.cpu_count()
    print(
        f"load average (1 min) {load[0]:.2f} before, {load[1]:.2f} after, on {cores} cores"
        + ("; NOT QUIET: the ratio is unreliable" if max(load) > 0.5 else "")
    )
    print(
        f"runs (s): pytorch-fid {', '.join(f'{t:.2f}' for t in timings['pytorch-fid'])}; "
        f"htd {', '.join(f'{t:.2f}' for t in timings['htd'])}"
    )
    c_ref, c_htd = float(np.median(cpu["pytorch-fid"])), float(np.median(cpu["htd"]))
    print(
        f"CPU time (medians, all threads of this process; less sensitive to other load): "
        f"pytorch-fid {c_ref:.2f} s, htd {c_htd:.2f} s, ratio {c_ref / c_htd:.1f}x"
    )
    print(
        f"statistics: np.cov {t_stats_ref:.2f} s, htd streamed float64 moments {t_stats_htd:.2f} s "
        f"(max relative covariance difference {cov_err:.1e})"
    )
    print(
        f"pytorch-fid calculate_frechet_distance (scipy sqrtm): FD = {values['pytorch-fid']:.10f}  {t_ref:7.2f} s (median)"
    )
    print(
        f"htd fd_math.frechet_distance (cholesky, trmm, dsyevd): FD = {values['htd']:.10f}  {t_htd:7.2f} s (median)"
    )
    print(f"htd from its own streamed statistics:                 FD = {streamed:.10f}")
    print(
        f"relative difference: {rel:.2e} (same statistics), {rel_streamed:.2e} (streamed); target <= 1e-6"
    )
    print(
        f"speed-up of the distance (medians): {t_ref / t_htd:.1f}x (target >= 10x); "
        f"end to end incl. statistics: {(t_ref + t_stats_ref) / (t_htd + t_stats_htd):.1f}x"
    )
    rel = max(rel, rel_streamed)
    if rel > 1e-6:
        raise SystemExit("FAIL: values differ by more than 1e-6 relative")


if __name__ == "__main__":
    main()
