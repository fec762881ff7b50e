"""vitjax: fine-tune pretrained Vision Transformers on your own images with JAX/Flax.

The public API is small: `load_pretrained` returns a `Classifier` (Flax module + params +
preprocessing) that predicts, exposes logits in the Hugging Face layout, and saves back to
Hugging Face format. Training runs through `python -m vitjax.main --config <file>`.
"""

__version__ = "0.1.0"


def load_pretrained(*args, **kwargs):
    """See `vitjax.api.load_pretrained` (imported lazily to keep `import vitjax` cheap)."""
    from vitjax.api import load_pretrained as _load
    return _load(*args, **kwargs)
