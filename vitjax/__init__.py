"""vitjax: fine-tune pretrained Vision Transformers on your own images with JAX/Flax.

The public API is small: `load_pretrained` returns a `Classifier` (Flax module + params +
preprocessing) that predicts, exposes logits in the Hugging Face layout, and saves back to
Hugging Face format; `load_trained` turns a finished run's export (any task) into a `Predictor`.
Training runs through `python -m vitjax.main --config <file>`.
"""

__version__ = "0.1.0"


def load_pretrained(*args, **kwargs):
    """See `vitjax.api.load_pretrained` (imported lazily to keep `import vitjax` cheap)."""
    from vitjax.api import load_pretrained as _load
    return _load(*args, **kwargs)


def load_trained(*args, **kwargs):
    """See `vitjax.predictor.load_trained`: an exported run (`best/` or `best_vitjax/`) as a
    `Predictor` that turns images into the task's outputs and predictions."""
    from vitjax.predictor import load_trained as _load
    return _load(*args, **kwargs)
