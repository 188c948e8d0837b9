"""faiss k-means as the phenotype clustering's fit (``KMeansOptions(backend="faiss")``,
``htd discover cluster --kmeans-backend faiss``).

faiss (Meta's similarity-search library) runs Lloyd's k-means with blocked BLAS distance
computations; a faiss build with GPU support (``faiss-gpu``) runs the same call on every
visible GPU, the CPU wheel (``faiss-cpu``) on the CPU. Here it replaces steps 1-4 of
:mod:`htd_plugins.discovery.kmeans` (coarse k-means, D'Hondt split, refinement, split-merge):
it clusters the same fit sample (256 rows per phenotype, faiss' own rule) into P centres in
one flat k-means, and the streamed full passes over all rows stay as they are, so memory is
bounded the same way. faiss is imported when used, never at import time.

The start is htd's greedy k-means++ (scikit-learn's), not one of faiss' own: on six
well-separated blobs (the test of this backend) faiss' random start recovered them (adjusted
Rand index 1) in 0 of 4 seeds and its k-means++ start in 1 of 4; on the 150-component
mixture of ``benchmarks/bench_kmeans_faiss.py`` (20,000 x 1024, k = 100) the random start
gave 1.23x the inertia of faiss' k-means++.
"""

from __future__ import annotations

import numpy as np

from htd_core.errors import InputError

#: Lloyd iterations (faiss' default).
ITERATIONS = 25


def import_faiss():
    """The ``faiss`` module.

    Raises:
        InputError: faiss is not installed (names the package to install).
    """
    try:
        import faiss
    except ImportError:
        raise InputError(
            "the faiss k-means backend needs faiss: `pip install faiss-cpu` (or a faiss build "
            "with GPU support), or use the htd backend (--kmeans-backend htd)"
        ) from None
    return faiss


def faiss_centers(
    sample: np.ndarray, start: np.ndarray, iterations: int = ITERATIONS
) -> np.ndarray:
    """Lloyd's k-means of ``sample`` (N x D, any float dtype) by faiss, from the k x D
    centres ``start``.

    Uses every GPU faiss sees (none with ``faiss-cpu``), else as many CPU threads as torch
    (htd's thread policy). Deterministic for a start on one machine and thread count.

    Returns:
        k x D float32 centres.

    Raises:
        InputError: faiss is missing.
    """
    faiss = import_faiss()
    import torch

    x = np.ascontiguousarray(sample, dtype=np.float32)
    start = np.ascontiguousarray(start, dtype=np.float32)
    k, dim = start.shape
    faiss.omp_set_num_threads(torch.get_num_threads())
    kmeans = faiss.Kmeans(
        dim,
        k,
        niter=int(iterations),
        max_points_per_centroid=len(x),  # the sample is already drawn: no second subsampling
        min_points_per_centroid=1,  # the caller checks cluster sizes (min_cluster_size)
        gpu=faiss.get_num_gpus() > 0,
    )
    kmeans.train(x, init_centroids=start)
    return np.asarray(kmeans.centroids, dtype=np.float32).reshape(k, dim)
