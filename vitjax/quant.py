"""`config.quant`: quantization-aware training (QAT) with qwix, mirroring `--format onnx-int8-static`.

With `config.quant.enabled`, the train and eval steps run the model through qwix's quantized-training
provider (`qwix.QtProvider`): every matrix product — each Dense layer, the patch embedding's
convolution, attention's two activation-by-activation products and the head — sees its inputs
fake-quantized to 8 bits (quantized and dequantized in the forward pass, gradients passed straight
through within the range), as the static int8 export quantizes every MatMul, Conv and Gemm of the
ONNX graph (`vitjax.deploy.quantize.quantize_int8_static`):

  * weights: int8, symmetric, one scale per output channel (absmax), as the export's weights
    (qwix's grid spans ±127.5 steps, ONNX Runtime's ±127: scales 0.4% apart);
  * activations: 8-bit, asymmetric (min/max, zero kept exact), one scale per tensor, as the
    export's uint8 activations. In attention's two products, where both operands are activations,
    qwix takes one asymmetric operand only: the softmax probabilities (and one of queries and keys)
    are min/max, the values (and the other) symmetric (absmax) — the one place the QAT model differs
    from the export.

Activation ranges are each batch's min/max (qwix's dynamic range, one scale per tensor): training
keeps no running range, so the train state and its checkpoints are those of a float run. The static
export calibrates its ranges as for any run (`--calibration N` training images, min/max over them).
LayerNorm, GELU, softmax and the residual additions stay float, as in the export.

QAT is a training-time transform: the parameters stay float32, and what a run saves and exports is
those float weights (`best/`), so the export path is the same as a float run's. Evaluation during
and after training (validation, the test split, best-checkpoint selection) runs the quantized model:
its numbers are what the static int8 export should score.
"""
from __future__ import annotations

import dataclasses

import ml_collections

from vitjax.errors import BadValue


def default_config() -> ml_collections.ConfigDict:
    """The `config.quant` subtree; QAT is off by default."""
    c = ml_collections.ConfigDict()
    c.enabled = False                # fake-quantize weights (int8 per channel) and activations (8-bit
                                     # per tensor) of every matrix product while training and evaluating
    return c


def quantized(quant_cfg, module):
    """`module` (a linen model) as the train and eval steps apply it: itself when QAT is off, else the
    same module with qwix's fake quantization of its matrix products (same parameters)."""
    if not quant_cfg.enabled:
        return module
    try:
        import qwix
    except ImportError:
        raise BadValue("config.quant.enabled=True trains with qwix, which is not installed; "
                       "pip install 'vitjax[qat]' (or pip install qwix).") from None
    import jax.numpy as jnp

    rule = qwix.QtRule(module_path=".*", weight_qtype=jnp.int8, weight_calibration_method="absmax",
                       act_qtype=jnp.int8, act_calibration_method="minmax", act_static_scale=False)
    return qwix.quantize_model(module, _provider(qwix)([rule]))


def _provider(qwix):
    """qwix's QT provider with the static export's granularity: qwix quantizes activations per row
    (every non-contracted axis) by default; the export has one scale per activation tensor."""
    from qwix._src.utils.flax_util import find_param

    class PerTensorActivations(qwix.QtProvider):
        def _create_dot_general_qt_config(self, rule, op_id, lhs, rhs):
            config = super()._create_dot_general_qt_config(rule, op_id, lhs, rhs)
            lhs_activation, rhs_activation = find_param(lhs) is None, find_param(rhs) is None
            changes = dict(lhs_disable_channelwise_axes=lhs_activation, rhs_disable_channelwise_axes=rhs_activation)
            if lhs_activation and rhs_activation:  # qwix multiplies one asymmetric operand at most
                changes["lhs_calibration_method"] = "absmax"
            return dataclasses.replace(config, **changes)

        def _create_conv_general_qt_config(self, rule, op_id, lhs, rhs):
            config = super()._create_conv_general_qt_config(rule, op_id, lhs, rhs)
            return dataclasses.replace(config, lhs_disable_channelwise_axes=True)

    return PerTensorActivations
