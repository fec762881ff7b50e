"""int8 post-training quantization of an exported ONNX model with ONNX Runtime, and the graph made compact.

Two formats. Static (`quantize_int8_static`, `--format onnx-int8-static`): 8-bit activations at
scales calibrated on training images, for runtimes that need every matrix product in integers.
Dynamic quantization (`quantize_dynamic`, `--format onnx-int8`): the weights of every MatMul (attention projections, MLP,
head) and of the patch-embedding Conv are stored as int8 per output channel, and the activations are
quantized on the fly per batch (MatMulInteger, ConvInteger), so no calibration data is needed and the
activations' scale follows each batch's actual range (`bench/int8_accuracy.py` measures both).
A ViT holds nearly all its parameters in MatMuls, so a ViT-B/16 shrinks ~3.9x from them alone; a
small model such as the 0.3M-parameter digits demo also carries float tensors outside them and a
graph whose names and shape annotations weigh tens of kB. So, after ORT's quantizer:
  * float initializers of >= `WEIGHT_ONLY_MIN_SIZE` elements that no quantized op took (the position
    embedding) are stored weight-only: int8 with one symmetric scale, and a DequantizeLinear node
    (a standard ONNX op) restores them when the graph runs;
  * identical initializers are stored once, the optional shape annotations (`value_info`, which
    ONNX Runtime infers again at load) are dropped, and tensors and nodes get short names (the
    graph's inputs and outputs keep theirs).
The biases, LayerNorm scales and per-channel quantization scales stay float32 (a few kB).
Measured (`bench/int8_accuracy.py --workdir runs/digits --qat_workdir runs/digits_qat --vit_b16`): digits 1.32 MB -> 0.36 MB
(3.69x; 3.0x with MatMuls alone) at the same test accuracy (0.9833); ViT-B/16 346.5 MB -> 86.8 MB (3.99x).
"""
from __future__ import annotations

import itertools
import os
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process

WEIGHT_ONLY_MIN_SIZE = 1024  # elements: smaller float tensors (biases, norms) are not worth a DequantizeLinear


def quantize_int8(model: onnx.ModelProto, output_path: str) -> onnx.ModelProto:
    """Writes the int8 version of `model` (metadata kept) to `output_path` and returns it."""
    with tempfile.TemporaryDirectory() as tmp:
        prepared = _prepared(model, tmp)
        quantize_dynamic(prepared, output_path, weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Conv"])
    return _finished(model, output_path)


def quantize_int8_static(model: onnx.ModelProto, output_path: str, calibration: np.ndarray,
                         input_name: str) -> onnx.ModelProto:
    """Writes the static int8 version of `model` to `output_path` and returns it: QDQ
    (QuantizeLinear / DequantizeLinear pairs) around every MatMul, Conv and Gemm — where a ViT does
    all its arithmetic — with int8 weights per output channel and 8-bit activations at static scales:
    the ranges each input takes over `calibration` (the graph's uint8 input images [N, H, W, C], fed
    32 at a time; min-max calibration). ONNX Runtime fuses the pairs into integer kernels; an
    integer runtime runs every matrix product on 8-bit operands. Activations are unsigned (uint8 with
    a zero point, ONNX Runtime's x86 default): its quantizer (1.32) writes int8-activation QDQ graphs
    that fail to load (a QuantizeLinear's output type disagrees with its zero point). LayerNorm,
    GELU and softmax stay float between the pairs; quantizing them too (every op ORT knows) took
    the digits demo from 0.53 to chance (0.13), its softmax and top-k outputs squeezed into 256 levels."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, quantize_static

    if len(calibration) == 0:
        raise ValueError("quantize_int8_static needs at least one calibration image")

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{input_name: calibration[i:i + 32]} for i in range(0, len(calibration), 32)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = _prepared(model, tmp)
        quantize_static(prepared, output_path, Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["MatMul", "Conv", "Gemm"])
    return _finished(model, output_path)


def _prepared(model: onnx.ModelProto, folder: str) -> str:
    """`model` saved in `folder` after ORT's recommended shape inference and graph cleanup; its path."""
    source, prepared = os.path.join(folder, "float.onnx"), os.path.join(folder, "prepared.onnx")
    onnx.save_model(model, source)
    quant_pre_process(source, prepared)
    return prepared


def _finished(model: onnx.ModelProto, output_path: str) -> onnx.ModelProto:
    """The quantized file at `output_path` made compact, with `model`'s metadata, saved and returned."""
    quantized = onnx.load_model(output_path)
    store_weight_only_int8(quantized.graph)
    compact(quantized.graph)
    onnx.helper.set_model_props(quantized, {p.key: p.value for p in model.metadata_props})
    onnx.save_model(quantized, output_path)
    return quantized


def store_weight_only_int8(graph: onnx.GraphProto) -> None:
    """Large float32 initializers as int8 (symmetric, one scale) behind a DequantizeLinear node."""
    dequantize = []
    for init in graph.initializer:
        weights = numpy_helper.to_array(init)
        if weights.dtype != np.float32 or weights.size < WEIGHT_ONLY_MIN_SIZE:
            continue
        scale = np.float32(np.abs(weights).max() / 127) or np.float32(1)
        name = init.name
        init.CopyFrom(numpy_helper.from_array(np.round(weights / scale).astype(np.int8), f"{name}_int8"))
        graph.initializer.append(numpy_helper.from_array(scale, f"{name}_scale"))
        dequantize.append(onnx.helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale"], [name]))
    for node in reversed(dequantize):
        graph.node.insert(0, node)


def compact(graph: onnx.GraphProto) -> None:
    """No value_info; in a graph without subgraphs (whose nodes may name outer tensors), identical
    initializers stored once and short tensor and node names."""
    del graph.value_info[:]
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        return
    first, duplicate_of = {}, {}
    for init in list(graph.initializer):
        array = numpy_helper.to_array(init)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key in first:
            duplicate_of[init.name] = first[key]
            graph.initializer.remove(init)
        else:
            first[key] = init.name
    kept = {v.name for v in itertools.chain(graph.input, graph.output)}
    short = (name for name in (f"t{i:x}" for i in itertools.count()) if name not in kept)
    renamed = {}
    for init in graph.initializer:
        renamed[init.name] = next(short)
        init.name = renamed[init.name]
    renamed.update({name: renamed[original] for name, original in duplicate_of.items()})
    for node in graph.node:
        renamed.update({name: next(short) for name in node.output if name and name not in kept})
    for i, node in enumerate(graph.node):
        node.name = f"n{i:x}"
        node.input[:] = [renamed.get(name, name) for name in node.input]
        node.output[:] = [renamed.get(name, name) for name in node.output]
