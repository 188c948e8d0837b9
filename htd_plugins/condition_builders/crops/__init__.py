"""Crop banks and class-region geometry used by the ``crop`` and ``embedding`` builders."""
