"""The slide layer: :class:`Slide` opens every slide or plain image (tiatoolbox), plus the
helpers the slide samplers share (tissue, annotations, class maps, composition).

Modules import tiatoolbox, OpenCV and shapely lazily inside functions, so importing a sampler
plugin stays cheap (``htd plugins`` lists every plugin without loading heavy libraries).
"""

from htd_plugins.slides.wsi import Slide

__all__ = ["Slide"]
