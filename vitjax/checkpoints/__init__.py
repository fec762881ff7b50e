"""Hugging Face <-> Flax checkpoints: the name table, loading, position-embedding resize, export."""
