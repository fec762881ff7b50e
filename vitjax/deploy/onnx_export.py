"""ONNX export of a `TrainedModel` with jax2onnx: uint8 images [batch, H, W, 3] in (any batch size), the
task's outputs out, the deploy info (task, labels, preprocessing) in the model's metadata.

jax2onnx converts the jitted serving function's JAX primitives one by one into ONNX operators, so the
graph is vitjax's own model (no PyTorch round trip); its weights become initializers. A few
operators (jax2onnx's `jax.image.resize`, used by segmentation heads) convert only with a fixed batch
size; such models are converted per image, inside an ONNX loop over the batch.
"""
from __future__ import annotations

import json
import logging

import jax
import jax.numpy as jnp
import onnx

from vitjax.trained import INPUT_NAME
from vitjax.errors import BadValue

log = logging.getLogger(__name__)
METADATA_KEY = "vitjax"  # metadata_props key holding the deploy info as JSON


def to_onnx(trained, info: dict) -> onnx.ModelProto:
    """`trained`'s serving function (a `vitjax.trained.TrainedModel`) as an ONNX model with a dynamic
    batch dimension and `info` as metadata."""
    from jax2onnx import to_onnx as convert

    logging.getLogger("onnx_ir.serde").setLevel(logging.ERROR)  # harmless notes on shape constants
    images = jax.ShapeDtypeStruct(jax.export.symbolic_shape(f"batch, {', '.join(map(str, trained.input_shape))}"),
                                  jnp.uint8)
    names = dict(model_name=f"vitjax_{trained.task.name}", input_names=[INPUT_NAME],
                 output_names=sorted(info["outputs"]))
    serve = trained.serving_fn()
    try:
        model = convert(serve, [images], **names)
    except jax.errors.InconclusiveDimensionOperation:
        log.info("an operator of the %s model does not convert over a symbolic batch: the ONNX graph runs "
                 "the images of a batch one after another (any batch size works)", trained.task.name)
        model = convert(lambda x: jax.lax.map(lambda image: jax.tree.map(lambda a: a[0], serve(image[None])), x),
                        [images], **names)
    _drop_unused_initializers(model.graph)
    for output in model.graph.output:  # jax2onnx may declare a fixed size; the batch is dynamic
        output.type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(info)})
    return model


def _drop_unused_initializers(graph: onnx.GraphProto) -> set[str]:
    """Removes the constants no node of `graph` (or of a graph nested in it) reads, which ONNX Runtime
    would otherwise announce one warning each (the loop body of a converted `lax.map` holds dozens);
    returns the names `graph` and its nested graphs read."""
    used = {output.name for output in graph.output}
    for node in graph.node:
        used.update(node.input)
        for attribute in node.attribute:
            for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                used |= _drop_unused_initializers(sub)  # a body may read the enclosing graph's names
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return used


def read_info(model: onnx.ModelProto) -> dict:
    """The deploy info written by `to_onnx`."""
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise BadValue(f"this ONNX model has no {METADATA_KEY!r} metadata: it was not written by vitjax.")
    return json.loads(props[METADATA_KEY])
