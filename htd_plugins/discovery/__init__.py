"""Self-supervised tissue discovery: pseudo semantic maps for unannotated slides.

Stages (each a module): ``embed`` (tissue grid + float16 embeddings per slide), ``diversity``
(k-center sample per slide), ``kmeans`` + ``tree`` + ``clustering`` (phenotypes and their
merge tree), ``maps`` (pseudo maps per granularity), ``classifier`` + ``distill`` (ViT-small
student), ``curriculum`` (the coarse-to-fine sampler plugin). See docs/discovery.md.
"""

from htd_plugins.discovery.quick import pseudo_maps_for_image, tiatoolbox_sample_image

__all__ = ["pseudo_maps_for_image", "tiatoolbox_sample_image"]
