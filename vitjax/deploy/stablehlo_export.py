"""StableHLO export with `jax.export`: the serving function with its weights as one serialized
artifact (symbolic batch dimension) that plain JAX deserializes and runs on CPU, GPU or TPU without
vitjax's model code: `jax.export.deserialize(blob).call(images)`."""
from __future__ import annotations

import jax
import jax.numpy as jnp

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def to_stablehlo(trained) -> bytes:
    """The serialized `jax.export.Exported` of `trained`'s serving function (a `TrainedModel`),
    lowered for every platform."""
    shape = jax.export.symbolic_shape(f"batch, {', '.join(map(str, trained.input_shape))}")
    exported = jax.export.export(jax.jit(trained.serving_fn()), platforms=PLATFORMS)(
        jax.ShapeDtypeStruct(shape, jnp.uint8))
    return bytes(exported.serialize())


def load_stablehlo(blob: bytes):
    """The runnable `jax.export.Exported` (`.call(uint8 images) -> {output: array}`)."""
    return jax.export.deserialize(bytearray(blob))
