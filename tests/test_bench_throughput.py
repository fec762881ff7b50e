"""bench/train_throughput.py works end to end on a CPU: the real step builds, runs and is counted."""

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_throughput", os.path.join(ROOT, "bench",
                                                                                   "train_throughput.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.parametrize("freeze,mode", [("full", "train"), ("head_only", "train"), ("full", "eval")])
def test_measure_tiny_step(bench, freeze, mode):
    v = bench.Variant("tiny", 32, 8, freeze, mode=mode, dtype="float32")
    row = bench.measure(v, steps=2, warmup=1, repeats=2)
    assert row["img_s"] > 0 and row["compile_s"] > 0 and row["peak_gib"] > 0
    assert row["backbone"]["attention_impl"] == "einsum"  # CPU: two einsums and a softmax (fast_paths)
    # XLA's count of the compiled step: the analytic matmuls plus the elementwise work around them.
    assert row["model_gflop_img"] <= row["xla_gflop_img"] < 1.3 * row["model_gflop_img"]


def test_model_flops_of_vit_b16(bench):
    full = bench.model_flops(bench.Variant("B/16", 224))
    assert full == pytest.approx(105.15e9, rel=1e-3)  # the 105 GFLOP per image
    forward = bench.model_flops(bench.Variant("B/16", 224, mode="eval"))
    assert bench.model_flops(bench.Variant("B/16", 224, freeze="head_only")) == pytest.approx(forward, rel=1e-4)
    assert forward < bench.model_flops(bench.Variant("B/16", 224, freeze="last_4_blocks")) < full


def test_table_shows_ratio_and_mfu(bench):
    row = dict(variant=vars(bench.Variant("B/16", 224)), device_kind="NVIDIA H100 80GB HBM3", devices=1,
               img_s=3600.0, step_ms=71.1, model_gflop_img=105.15, xla_gflop_img=None, peak_gib=30.0,
               peak_estimated=False, compile_s=20.0, start_s=25.0)
    anchors = {"timm_compile": {"img_s": 3000.0, "step_ms": 85.3, "batch": 256, "peak_gb": 20.0},
               "hf_trainer": {"error": "no GPU"}}
    text = bench.table([row], anchors)
    assert "1.20x" in text and "38.3%" in text and "error: no GPU" in text
