"""The slide layer: :class:`Slide` opens every slide or plain image (tiatoolbox), plus the
helpers the slide samplers share (tissue, annotations, class maps, composition).

Public names (for the applications: discovery, slide synthesis; submodules are internal):

- :class:`Slide`: any slide or plain image, read at a resolution in um/px;
- :func:`tissue_mask`: boolean tissue mask of an RGB thumbnail;
- :func:`open_store`, :func:`store_labels`: annotation files (GeoJSON, ASAP XML, ``.db``)
  as a tiatoolbox AnnotationStore, and the labels it holds;
- :class:`LabelResolver`, :func:`paint_store`, :func:`check_bounds`: annotation labels ->
  classes, painted into a class map, checked against the slide's extent;
- :func:`read_label_mask`, :func:`load_code_names`, ``NO_LABEL``: label-mask files and the
  class names of their codes;
- :class:`PhenotypeTree`, :func:`class_names`, :func:`palette`, ``DEFAULT_LEVELS``: the merge
  tree of discovered phenotypes (nested granularities) that the ``curriculum`` sampler reads.

Modules import tiatoolbox, OpenCV and shapely lazily inside functions, so importing a sampler
plugin stays cheap (``htd plugins`` lists every plugin without loading heavy libraries).
"""

from htd_plugins.slides.annotation_files import open_store, store_labels
from htd_plugins.slides.annotations import LabelResolver, check_bounds, paint_store
from htd_plugins.slides.label_masks import NO_LABEL, load_code_names, read_label_mask
from htd_plugins.slides.phenotypes import DEFAULT_LEVELS, PhenotypeTree, class_names, palette
from htd_plugins.slides.tissue import tissue_mask
from htd_plugins.slides.wsi import Slide

__all__ = [
    "DEFAULT_LEVELS", "NO_LABEL", "LabelResolver", "PhenotypeTree", "Slide", "check_bounds",
    "class_names", "load_code_names", "open_store", "paint_store", "palette", "read_label_mask",
    "store_labels", "tissue_mask",
]  # fmt: skip
