"""Deployment artifacts of a trained model: ONNX, int8 ONNX and StableHLO exports.

A model folder is read by `vitjax.trained.load_trained` into a `TrainedModel` whose one serving
function (uint8 images -> task outputs) every export and serving backend shares; `onnx_export`,
`quantize` and `stablehlo_export` write it out; `artifacts` is the `--mode export --format ...` entry
point (and `deploy_info`, what every artifact carries) and reads exported folders back.
"""
