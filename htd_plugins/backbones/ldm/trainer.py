"""Micro-batches of training: samples read and checked, cropped, augmented, conditioned and
encoded (the loop that consumes them is :mod:`.loop`)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from htd_core.errors import InputError
from htd_core.interfaces import Autoencoder, ConditionBuilder, PatchSampler
from htd_core.interfaces.latent import to_model_range
from htd_core.training_data import SampleList, TrainingData
from htd_core.types import TissueSample, collate_conditions
from htd_plugins.backbones.ldm.augment import Augmentation, dihedral, random_crop
from htd_plugins.backbones.ldm.training import step_generator


class BatchSource:
    """Latents and conditions of the micro-batch of (step, micro-batch, process).

    ``autoencoder`` is an :class:`htd_core.Autoencoder`; a batch's latents are posterior
    samples ``(mean + std * noise) * scaling_factor``. With ``cache`` the posterior (mean, std)
    of every sample and each of its dihedral variants is computed once; otherwise augmented
    images are encoded every step.
    ``for_step(sample, step)`` (a sampler's :meth:`~htd_core.PatchSampler.for_step`), when
    given, re-expresses each drawn sample for the step it is drawn at (a curriculum), before
    cropping, augmentation and its condition; the cached latents depend on pixels only.
    With ``prefetch``, :meth:`draw_next` has a background thread draw, crop, augment and
    condition the next micro-batch (NumPy and the builder: CPU work) while the model trains on
    this one, as a DataLoader worker would; every draw is seeded by its (step, micro-batch,
    process), so the batches are the same either way. Encoding and noise stay on the calling
    thread.
    """

    def __init__(
        self,
        samples: TrainingData | Sequence[TissueSample],
        builder: ConditionBuilder,
        autoencoder: Autoencoder,
        augment: Augmentation,
        *,
        batch_size: int,
        image_size: int,
        seed: int,
        cache: bool,
        device: torch.device,
        for_step: Callable[[TissueSample, int], TissueSample] | None = None,
        prefetch: bool = True,
    ) -> None:
        self.for_step = for_step
        self._pool = ThreadPoolExecutor(1, "htd-batch") if prefetch else None
        self._ahead: tuple[tuple[int, ...], Future] | None = None
        if not isinstance(samples, TrainingData):
            samples = SampleList(samples)
        if cache:  # cached latents need fixed windows: centre crops
            samples = SampleList([center_crop(s, image_size) for s in samples])
        self.samples, self.builder, self.image_size = samples, builder, image_size
        self.autoencoder = autoencoder
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.scaling = float(autoencoder.scaling_factor)
        self.augment = Augmentation(augment.dihedral, 0.0, 0.0) if cache else augment
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = (
            self._encode_all() if cache else None
        )

    @torch.no_grad()
    def _encode_all(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        out = {}
        for i, sample in enumerate(self.samples):
            views = np.stack([dihedral(sample.image, v) for v in range(self.augment.num_variants)])
            mean, std = self.autoencoder.distribution(to_model_range(views).to(self.device))
            out[str(i)] = (mean.float(), std.float())
        return out

    @torch.no_grad()
    def batch(self, step: int, micro: int, rank: int, world: int, accum: int):
        """(latents B x c x h x w scaled, spatial B x C x H x W or None, tokens or None).

        Raises what drawing the micro-batch raises (e.g. the builder's InputError), here,
        also when a background thread drew it."""
        key = (step, micro, rank, world, accum)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] != key:  # another order of calls (e.g. a resume)
            ahead[1].cancel()
            ahead = None
        drawn = ahead[1].result() if ahead is not None else self._draw(*key)
        pixels, posterior, spatial, tokens = drawn
        gen = step_generator(self.seed, step, micro, rank, 2)
        if posterior is not None:
            mean, std = posterior
        else:
            mean, std = self.autoencoder.distribution(pixels.to(self.device))
            mean, std = mean.float(), std.float()
        noise = torch.randn(mean.shape, generator=gen).to(mean.device)
        latents = (mean + std * noise) * self.scaling
        to = lambda x: None if x is None else x.to(self.device)  # noqa: E731
        return latents.to(self.device), to(spatial), to(tokens)

    def draw_next(self, step: int, micro: int, rank: int, world: int, accum: int) -> None:
        """Start drawing the micro-batch after (step, micro) of this process on the background
        thread. The loop calls it before the backward pass, which holds no Python lock, so the
        thread's work runs beside it. Done only with ``prefetch`` and a core to spare: on a
        GPU, or on CPU while torch uses fewer threads than there are cores (measured on 2
        cores, ``small``: 1.04x the steps/s with 1 thread, but 0.6x with 2, where every torch
        operation of the step slowed down); otherwise :meth:`batch` draws when asked."""
        from htd_core.threads import all_cores

        if self._pool is None or (
            self.device.type == "cpu" and torch.get_num_threads() >= all_cores()
        ):
            return
        after = (step, micro + 1) if micro + 1 < accum else (step + 1, 0)
        following = (*after, rank, world, accum)
        self._ahead = (following, self._pool.submit(self._draw, *following))

    def close(self) -> None:
        """Stop the background thread (a micro-batch drawn ahead is dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool, self._ahead = None, None

    @torch.no_grad()  # grad mode is per thread: also off on the background thread
    def _draw(self, step: int, micro: int, rank: int, world: int, accum: int):
        """The CPU part of a micro-batch: (pixels B x 3 x H x W in [-1, 1], or None when
        latents are cached; the cached posterior (mean, std) or None; spatial; tokens)."""
        drawn = self.samples.take(step * accum + micro, self.batch_size, rank, world, self.seed)
        conditions, images, cached = [], [], []
        for j, (i, sample) in enumerate(drawn):
            rng = np.random.default_rng([self.seed, step, micro, rank, j])
            if self.for_step is not None:
                sample = self.for_step(sample, step)
            sample = random_crop(sample, self.image_size, rng)
            sample, variant = self.augment(sample, rng)
            conditions.append(self.builder.build(sample, seed=int(rng.integers(2**31))))
            if self.cache is not None:
                mean, std = self.cache[i]
                cached.append((mean[variant], std[variant]))
            else:
                images.append(sample.image)
        spatial, tokens = collate_conditions(conditions)
        if self.cache is not None:
            posterior = (torch.stack([m for m, _ in cached]), torch.stack([s for _, s in cached]))
            return None, posterior, spatial, tokens
        return to_model_range(np.stack(images)), None, spatial, tokens


def step_transform(
    samples: Iterable[TissueSample],
) -> Callable[[TissueSample, int], TissueSample] | None:
    """The ``for_step`` hook of ``samples`` (a PatchSampler, or a pass-through such as
    :class:`htd_core.coverage.ClassCoverage` that forwards its sampler's) when it is not the
    default identity; None otherwise."""
    hook = getattr(samples, "for_step", None)
    owner = getattr(hook, "__self__", None)
    if hook is None or (
        isinstance(owner, PatchSampler) and type(owner).for_step is PatchSampler.for_step
    ):
        return None
    return hook


def prepare_samples(
    samples: Iterable[TissueSample] | TrainingData, image_size: int, limit: int | None
) -> TrainingData:
    """The training data, checked (images present, one class map, size): shards (a
    :class:`~htd_core.training_data.TrainingData` read as a stream, checked on a first sample)
    pass through; other samples are materialised in a :class:`SampleList`.

    Raises:
        InputError: naming the sample at fault; ``limit`` with a stream (write fewer shards).
    """
    if isinstance(samples, TrainingData) and samples.streamed:
        if limit is not None:
            raise InputError(
                f"max_samples={limit} selects samples in memory; a shard stream reads all its "
                "shards: write fewer samples (htd sample --limit) instead"
            )
        _check(samples.spread(1)[0], 0, samples.class_map, image_size)
        return samples
    out: list[TissueSample] = []
    for s in itertools.islice(samples, limit):
        _check(s, len(out), out[0].class_map if out else s.class_map, image_size)
        out.append(s)
    if not out:
        raise InputError("no training samples: the sampler yielded nothing")
    return SampleList(out)


def _check(s: TissueSample, i: int, class_map, image_size: int) -> None:
    if s.image is None:
        raise InputError(f"training sample {i} ({s.meta.get('slide_id', '?')}) has no image")
    if s.class_map != class_map:
        raise InputError(
            f"training sample {i} has classes {list(s.class_map.names)}, unlike sample 0 "
            f"{list(class_map.names)}: train on one class map"
        )
    if min(s.size) < image_size:
        raise InputError(
            f"training sample {i} is {s.size[0]}x{s.size[1]} px, smaller than the model's "
            f"{image_size} px patches: sample larger patches or set image_size"
        )


def center_crop(sample: TissueSample, size: int) -> TissueSample:
    h, w = sample.size
    y, x = (h - size) // 2, (w - size) // 2
    image = sample.image[y : y + size, x : x + size]
    return TissueSample(
        image, sample.mask[y : y + size, x : x + size], sample.class_map, sample.meta
    )
