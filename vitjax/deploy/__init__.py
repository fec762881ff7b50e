"""Deployment artifacts of a trained model: ONNX, int8 ONNX and StableHLO exports.

`servable` loads a model folder into one `serving_fn` (uint8 images -> task outputs) that every
export and serving backend shares; `onnx_export`, `quantize` and `stablehlo_export` write it out;
`artifacts` is the `--mode export --format ...` entry point and reads exported folders back.
"""
