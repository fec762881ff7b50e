"""vitjax: fine-tune pretrained Vision Transformers on your own images with JAX/Flax.

The public API is small: `load_pretrained` returns a `Classifier` (Flax module + params +
preprocessing) that predicts, exposes logits in the Hugging Face layout, and saves back to
Hugging Face format; `load_trained` turns a finished run's export (any task) into a `TrainedModel`,
of which a `Classifier` is a view.
Training runs through `python -m vitjax.main --config <file>`.
"""

__version__ = "0.1.0"


_PUBLIC = {"load_pretrained": "vitjax.api", "Classifier": "vitjax.api",
           "load_trained": "vitjax.trained", "TrainedModel": "vitjax.trained"}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    """`vitjax.load_pretrained`, `vitjax.load_trained` and their classes are their modules' own
    (signature and help included), imported on first use to keep `import vitjax` cheap."""
    if name in _PUBLIC:
        import importlib
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'vitjax' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_PUBLIC])
