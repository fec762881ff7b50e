"""LoRA against PEFT: the trainable-parameter count of the HF recipe, adapters exported to PEFT and
loaded from PEFT with equal logits, the merged export in transformers, and how LoRA composes with
freezing presets, layer decay, bfloat16 base weights and the configs/lora_beans.py recipe."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import peft
import pytest
import torch
import transformers
from flax.traverse_util import flatten_dict, unflatten_dict
from safetensors.numpy import load_file, save_file

from doc_blocks import set_flag, vitjax_args
from hf_oracle import TINY, make, pixels, rel_err, report, torch_forward
from train_helpers import colour_folder
from vitjax import config as config_lib
from vitjax import modes
from vitjax.api import load_pretrained
from vitjax.lora import peft as peft_format
from vitjax.lora.model import LoRAModel, LoRASpec, adapted_layers, merge
from vitjax.train import outputs, setup
from vitjax.trained import load_trained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = dict(r=16, lora_alpha=16, lora_dropout=0.1, target_modules=["q_proj", "v_proj"],
              modules_to_save=["classifier"])  # transformers 5 names query/value q_proj/v_proj


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny ViTForImageClassification (3 labels, 32 px) saved with save_pretrained."""
    path = tmp_path_factory.mktemp("lora") / "base"
    make("ViTForImageClassification", "ViTConfig", **TINY, intermediate_size=64, image_size=32,
         num_labels=3).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return colour_folder(str(tmp_path_factory.mktemp("lora_data") / "colours"), per_class=8, size=32)


def recipe_config(checkpoint, data):
    sys.path.insert(0, os.path.join(REPO, "configs"))
    try:
        import lora_beans
    finally:
        sys.path.pop(0)
    c = lora_beans.get_config()
    c.model.checkpoint, c.data.source = str(checkpoint), f"folder:{data}"
    c.model.dtype, c.data.workers, c.train.batch_size, c.train.progress = "float32", 0, 8, False
    c.compilation_cache = ""
    return c


def peft_model(base_dir, seed=0, **overrides):
    """PEFT's LoRA of the recipe on the saved base, with random (non-zero) adapters and classifier."""
    torch.manual_seed(seed)
    model = transformers.ViTForImageClassification.from_pretrained(base_dir)
    model = peft.get_peft_model(model, peft.LoraConfig(**{**RECIPE, **overrides}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(0.3 * torch.randn_like(p))
    return model.eval()


def test_trainable_parameters_equal_peft_for_the_hf_recipe(base, colours, tmp_path):
    run = setup.build_run(recipe_config(base, colours), str(tmp_path))
    ours = sum(g.size for g in run.training.optimizer.groups if g.trains)
    theirs, _ = peft_model(base).get_nb_trainable_parameters()
    print(f"LORA trainable parameters: vitjax {ours:,}, peft {theirs:,}")
    assert ours == theirs == 2 * 2 * (32 * 16 + 16 * 32) + 32 * 3 + 3
    assert f"trained: {ours:,} of" in run.training.optimizer.describe()
    assert len(adapted_layers(run.model.params)) == 4


def test_a_peft_adapter_from_pytorch_loads_with_equal_logits(base, tmp_path):
    theirs = peft_model(base, seed=1)
    theirs.save_pretrained(tmp_path / "adapter")
    x = pixels(2, 32, 32)
    expected = torch_forward(theirs, x).logits.numpy()

    merged = peft_format.load_pretrained(base, str(tmp_path / "adapter"))
    err_merged = rel_err(merged.logits(x), expected)
    clf = load_pretrained(base)
    lora, params = peft_format.load_adapter(str(tmp_path / "adapter"), clf.spec, clf.pooling, clf.params)
    model = LoRAModel(clf.model.backbone, clf.model.head, lora=lora)
    err_adapters = rel_err(clf.replace(model=model, params=params).logits(x), expected)
    # transformers 4 names (those of the saved model files) read the same
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    rename = lambda k: (k.replace("vit.layers.", "vit.encoder.layer.")
                        .replace("attention.q_proj", "attention.attention.query")
                        .replace("attention.v_proj", "attention.attention.value"))
    save_file({rename(k): v for k, v in load_file(tmp_path / "adapter" / "adapter_model.safetensors").items()},
              legacy / "adapter_model.safetensors")
    (legacy / "adapter_config.json").write_text((tmp_path / "adapter" / "adapter_config.json").read_text())
    err_legacy = rel_err(peft_format.load_pretrained(base, str(legacy)).logits(x), expected)
    report("peft_adapter_into_vitjax", merged=err_merged, adapters=err_adapters, legacy_names=err_legacy)
    assert max(err_merged, err_adapters, err_legacy) < 1e-4
    assert rel_err(clf.logits(x), expected) > 1e-2  # the adapter changes the function


def test_lora_beans_recipe_trains_and_exports_merged_and_peft(base, colours, tmp_path):
    """configs/lora_beans.py through the CLI (the command of docs/lora-sweeps-trackers.md) on a local
    tiny checkpoint: best/ loads in transformers, best_adapter/ in PEFT, and both give vitjax's logits."""
    args = vitjax_args("docs/lora-sweeps-trackers.md", "python -m vitjax.main --config configs/lora_beans.py")
    cmd = [sys.executable, "-m", "vitjax.main", *set_flag(args, "--workdir", str(tmp_path / "run")),
           f"--config.model.checkpoint={base}",
           f"--config.data.source=folder:{colours}", "--config.model.dtype=float32",
           "--config.data.workers=0", "--config.train.batch_size=8", "--config.train.epochs=1",
           "--config.train.progress=False", "--config.compilation_cache="]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr[-3000:]
    best, adapter = tmp_path / "run" / "best", tmp_path / "run" / "best_adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (16, 16.0, 0.1)
    assert config["modules_to_save"] == ["classifier"] and len(config["target_modules"]) == 4

    x = pixels(3, 32, 32, seed=2)
    ours = load_pretrained(best).logits(x)
    merged = transformers.AutoModelForImageClassification.from_pretrained(best).eval()
    original = transformers.AutoModelForImageClassification.from_pretrained(base, num_labels=3).eval()
    with_adapter = peft.PeftModel.from_pretrained(original, adapter).eval()
    err_merged = rel_err(ours, torch_forward(merged, x).logits.numpy())
    err_peft = rel_err(ours, torch_forward(with_adapter, x).logits.numpy())
    report("lora_export", merged_in_transformers=err_merged, adapter_in_peft=err_peft)
    assert max(err_merged, err_peft) < 1e-4
    lora_b = [v for k, v in load_file(adapter / "adapter_model.safetensors").items() if "lora_B" in k]
    assert all(np.abs(b).max() > 0 for b in lora_b)  # the adapters did train

    # --mode export of the LoRA run writes the PEFT adapter too, the one training wrote
    modes.export(None, str(tmp_path / "run"), str(tmp_path / "exported"))
    trained = load_file(adapter / "adapter_model.safetensors")
    exported = load_file(tmp_path / "exported_adapter" / "adapter_model.safetensors")
    assert exported.keys() == trained.keys()
    for name in trained:
        np.testing.assert_array_equal(exported[name], trained[name], err_msg=name)


def test_vitjax_adapters_export_to_peft_with_equal_logits(base, tmp_path):
    """Unmerged: vitjax's forward with adapters (dropout off) is PEFT's forward with them."""
    clf = load_pretrained(base)
    spec = LoRASpec(r"backbone/encoder/layer_\d+/(attention/(query|key|out)|mlp/fc2)", rank=4, alpha=8.0)
    model = LoRAModel(clf.model.backbone, clf.model.head, lora=spec)
    fresh = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)["params"]
    rng = np.random.default_rng(0)
    flat = {k: (rng.normal(size=v.shape).astype(np.float32) * 0.3 if "lora" in k else v)
            for k, v in flatten_dict(fresh, sep="/").items()}
    flat.update({k: v for k, v in flatten_dict(clf.params, sep="/").items()})
    params = unflatten_dict(flat, sep="/")
    trained = [p for p in flat if "lora" in p]
    peft_format.save_adapter(str(tmp_path / "adapter"), clf.spec, clf.pooling, params, spec, trained)
    original = transformers.AutoModelForImageClassification.from_pretrained(base).eval()
    theirs = peft.PeftModel.from_pretrained(original, tmp_path / "adapter").eval()
    x = pixels(2, 32, 32, seed=4)
    ours = clf.replace(model=model, params=params).logits(x)
    err = rel_err(ours, torch_forward(theirs, x).logits.numpy())
    err_merged = rel_err(clf.replace(params=merge(params, spec)).logits(x), ours)
    report("vitjax_adapters_into_peft", logits=err, merged_vs_adapters=err_merged)
    assert err < 1e-4 and err_merged < 1e-5


def test_lora_composes_with_layer_decay_presets_and_bfloat16_base(base, colours, tmp_path):
    config = recipe_config(base, colours)
    config.optim.freeze, config.optim.last_n_blocks, config.optim.layer_decay = "last_n_blocks", 1, 0.5
    config.lora.base_dtype, config.optim.warmup = "bfloat16", "0"
    run = setup.build_run(config, str(tmp_path))
    groups = {g.name: g for g in run.training.optimizer.groups}
    # adapters train in both blocks (block i is layer i+1), at layer-decayed rates
    assert groups["lora@1"].multiplier == pytest.approx(0.5 ** 2)
    assert groups["lora@2"].multiplier == pytest.approx(0.5)
    assert all("lora" in p for p in groups["lora@1"].paths)
    flat = flatten_dict(run.model.params, sep="/")
    assert flat["backbone/encoder/layer_00/mlp/fc1/kernel"].dtype == jnp.bfloat16  # frozen
    assert flat["backbone/encoder/layer_01/mlp/fc1/kernel"].dtype == np.float32  # last block trains
    assert flat["backbone/encoder/layer_00/attention/query/lora_a"].dtype == np.float32
    state = run.init_state()
    step = run.jit_train_step()
    state, _ = step(state, next(run.train_iterator()))
    after = flatten_dict(jax.device_get(state.params), sep="/")
    assert not np.array_equal(after["backbone/encoder/layer_00/attention/query/lora_b"],
                              flat["backbone/encoder/layer_00/attention/query/lora_b"])
    np.testing.assert_array_equal(after["backbone/encoder/layer_00/mlp/fc1/kernel"],
                                  flat["backbone/encoder/layer_00/mlp/fc1/kernel"])


def test_a_mean_pooled_lora_run_writes_no_peft_adapter_for_a_cls_class(base, colours, tmp_path):
    """PEFT's adapter sits on the family's class (ViTForImageClassification pools the CLS token): a
    mean-pooled LoRA run is exported merged in vitjax's format, with no adapter claiming that class."""
    config = recipe_config(base, colours)
    config.task.pooling = "mean"
    run = setup.build_run(config, str(tmp_path))
    directory = outputs.export(run, run.data.dataset, jax.device_get(run.model.params), outputs.export_dir(run))
    assert os.path.basename(directory) == "best_vitjax"
    assert sorted(os.listdir(tmp_path)) == ["best_vitjax"]  # no best_vitjax_adapter/
    trained = load_trained(directory)
    assert trained.task.name == "classification" and trained.model.head.pooling == "mean"


def test_lora_config_errors_name_the_key(base, colours, tmp_path):
    config = recipe_config(base, colours)
    config.optim.freeze = "full"
    with pytest.raises(ValueError, match=r"lora.targets is set but config.optim.freeze='full'"):
        config_lib.validate(config)
    config = recipe_config(base, colours)
    config.lora.targets = "backbone/.*/attention/qkv"
    with pytest.raises(ValueError, match=r"lora.targets=.*matches no Dense layer.*attention/query"):
        setup.build_run(config, str(tmp_path))


@pytest.mark.slow  # runs bench/lora.py; the LoRA behaviour itself is tested above
def test_bench_lora_prints_its_table():
    """`python bench/lora.py --tiny`: the README's benchmark runs and LoRA trains fewer parameters
    with less optimizer state than full fine-tuning."""
    out = subprocess.run([sys.executable, "bench/lora.py", "--tiny", "--steps", "1", "--repeats", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.stdout.splitlines() if line.startswith("| ") and "variant" not in line}
    trained = {name: int(row[0].replace(",", "")) for name, row in rows.items()}
    assert trained["head_only"] < trained["lora16_qv"] < trained["full"]
    assert float(rows["lora16_qv"][2]) < float(rows["full"][2])  # optimizer state MiB
    assert float(rows["lora16_bf16"][3]) < float(rows["lora16_qv"][3])  # params MiB: bf16 base
