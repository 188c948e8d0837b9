"""Whole-slide helpers shared by the slide samplers: reading, tissue, annotations, composition.

Modules import tiatoolbox, OpenCV and shapely lazily inside functions, so importing a sampler
plugin stays cheap (``htd plugins`` lists every plugin without loading heavy libraries).
"""
