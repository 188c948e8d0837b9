"""Frechet distance maths, encoder feature extraction, the real-set feature cache and the FD report section."""
