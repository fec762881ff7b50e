"""Data sources, seeded splits, transforms and the grain input pipeline."""
