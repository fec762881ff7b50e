"""Task plugins shipped with vitjax; each module registers itself through `vitjax.registry`."""
