"""The ``tiles`` sampler's library: which tiles of a folder it reads (``selection``) and how a
tile's mask becomes classes and patches (``cutting``)."""
