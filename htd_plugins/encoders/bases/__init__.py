"""Encoder base classes and local weight loading."""
