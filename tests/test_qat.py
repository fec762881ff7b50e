"""Quantization-aware training (`config.quant`, vitjax/quant.py): a QAT run on real digit scans trains,
evaluates its fake-quantized model, saves float weights, and its static int8 ONNX export
(`--format onnx-int8-static`, ranges calibrated by ONNX Runtime) scores the accuracy the run
evaluated in JAX; bad `config.quant` keys are one-line errors naming the key."""
import json

import jax
import numpy as np
import pytest

from train_helpers import tiny_config
from vitjax import config as config_lib, modes
from vitjax.errors import BadValue, UserError
from vitjax.serve.backends import open_backend
from vitjax.train import feature_cache, setup
from vitjax.trained import load_trained

# The static int8 export may differ from the QAT model's own evaluation by at most 2 points of test
# accuracy (4 of the 180 test scans): the QAT model takes each batch's activation ranges, the export
# those calibrated on 256 training scans, and attention's values and queries are symmetric in qwix.
EXPORT_VS_QAT = 0.02


def test_qat_run_trains_and_its_static_int8_export_scores_what_it_evaluated(tmp_path):
    config = tiny_config("demo:digits", epochs=6, eval_every="2 epochs")
    config.model.spec.update(hidden_size=48, mlp_dim=96)
    config.quant.enabled = True
    workdir = str(tmp_path / "qat")
    modes.train(config, workdir)
    with open(tmp_path / "qat" / "results.json", encoding="utf-8") as f:
        qat_accuracy = json.load(f)["metrics"]["test"]["accuracy"]

    # The steps' module is qwix's fake-quantized model (close to the float one, not equal to it) over
    # the run's saved weights, which are float.
    run = setup.build_run(config, str(tmp_path / "probe"))
    images = run.model.normalize(np.asarray(modes.split_images(workdir, f"{workdir}/best", "test", 32)[0]))
    params = load_trained(f"{workdir}/best").params
    assert {p.dtype for p in jax.tree.leaves(params)} == {np.dtype("float32")}
    float_logits, qat_logits = (jax.jit(lambda p, x, m=m: m.apply({"params": p}, x, train=False))(params, images)
                                for m in (run.model.module, run.steps.module))
    error = float(np.abs(qat_logits - float_logits).max() / np.abs(float_logits).max())
    assert 1e-4 < error < 0.2, error

    test_images, labels = modes.split_images(workdir, f"{workdir}/best", "test")
    accuracy = {"QAT (JAX, fake int8)": qat_accuracy}
    for fmt in ("onnx", "onnx-int8-static"):
        out = modes.export_deployable(workdir, None, fmt, str(tmp_path / fmt))
        accuracy[fmt] = float(np.mean(open_backend(out).run(test_images)["indices"][:, 0] == labels))
    print(f"QAT on {len(labels)} digit test scans: {accuracy}")
    assert qat_accuracy > 0.6  # trained (chance 0.1), so a broken export would show
    assert abs(accuracy["onnx-int8-static"] - qat_accuracy) <= EXPORT_VS_QAT


@pytest.mark.parametrize("key, value, message", [
    ("enable", True, "unknown key config.quant.enable. Did you mean 'enabled'?"),
    ("enabled", "yes", "config.quant.enabled must be true or false"),
])
def test_bad_quant_keys_are_one_line_errors_naming_the_key(key, value, message):
    config = tiny_config("demo:digits")
    with config.quant.unlocked(), config.quant.ignore_type():
        config.quant[key] = value
    with pytest.raises(UserError) as err:
        config_lib.validate(config)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_qat_turns_the_feature_cache_off(tmp_path):
    """The cached frozen part would run unquantized: "on" is an error naming config.quant.enabled."""
    config = tiny_config("demo:digits")
    config.optim.freeze, config.train.feature_cache, config.quant.enabled = "head_only", "on", True
    with pytest.raises(BadValue, match=r"config.quant.enabled=True \(the cached frozen part would run unquantized\)"):
        feature_cache.cached_run(setup.build_run(config, str(tmp_path / "run")))
