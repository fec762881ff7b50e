"""Flax Vision Transformer family (ViT, DeiT, DINOv2) and heads: pure modules, no I/O."""
