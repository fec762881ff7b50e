"""vitjax: fine-tune pretrained Vision Transformers on your own images with JAX/Flax.

The public API is small: `load_pretrained` returns a `Classifier` (Flax module + params +
preprocessing) that predicts, exposes logits in the Hugging Face layout, and saves back to
Hugging Face format. Training runs through `python -m vitjax.main --config <file>`.
"""

__version__ = "0.1.0"


_PUBLIC = ("load_pretrained", "Classifier")
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    """`vitjax.load_pretrained` and `vitjax.Classifier` are `vitjax.api`'s own (signature and help
    included), imported on first use to keep `import vitjax` cheap."""
    if name in _PUBLIC:
        from vitjax import api
        return getattr(api, name)
    raise AttributeError(f"module 'vitjax' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_PUBLIC])
