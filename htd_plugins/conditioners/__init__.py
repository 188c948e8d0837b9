"""Condition builders: semantic map, unconditional, crops and embeddings."""
