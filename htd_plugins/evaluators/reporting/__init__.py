"""Evaluation sets, report writing and figures shared by ``htd evaluate`` and the demo."""
