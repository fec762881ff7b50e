"""Throughput of vitjax's real train and eval steps, side by side with the PyTorch anchors.

    python bench/train_throughput.py --tiny          # a tiny ViT in seconds on a CPU: the script works
    python bench/train_throughput.py --torch-anchor .bench/torch_vit_anchor.py --json $OUT/bench.json
    python bench/train_throughput.py --freeze full --attention xla,cudnn --patch-embed conv,matmul

Every variant is built by the trainer's own code on synthetic uint8 images: `setup.build_run` (model
with the fast-path knobs of `config.model`, optimizer with its freezing mask, mesh and shardings),
`Run.init_state()`, `Run.jit_train_step()` / `Run.jit_eval_step()`, fed `parallel.global_batch`, as the
CLI's loop does. Each variant runs in a process of its own, so its peak device memory and start-up
are its own and an out-of-memory variant becomes a row, not the end of the run. The train variants are
the product of the list flags (--model, --resolution, --batch, --freeze, --attention, --attention-pad,
--patch-embed, --remat, --momentum-dtype); --eval-batch adds an inference row per model, resolution and
kernel choice. Rows name the kernels "auto" resolved to.

Columns: img/s and ms/step (median of --repeats windows of --steps steps after --warmup steps); the
ratio to timm + torch.compile (train) or transformers eager inference (eval) measured in the same call;
MFU = model FLOPs (counted analytically: matmuls and attention, a frozen part forward only) x img/s over
the device's dense bf16 peak (PEAK_TFLOPS or --peak-tflops); XLA's own FLOP count of the compiled step
(cost analysis; it counts no FLOPs inside cuDNN's fused attention); peak device memory
(`memory_stats()`, or XLA's static memory analysis where the backend keeps no statistics, marked *);
compile s (lower + compile of the step); start s (from the variant's process start, imports included,
to the end of its first step).
--cache-check runs the first train variant twice more over a fresh persistent compilation cache
(cold, then warm), as a second CLI run would find it; --profile DIR writes a `jax.profiler` trace of
--steps steps of the first train variant (after its timing, so the figures exclude it).

PyTorch anchors: --torch-anchor names the anchor script (run here when torch is importable; its
--json read back) or a JSON file it wrote earlier. The transformers eager inference anchor for the
eval rows is measured by this script (`torch_inference`), when torch, transformers and CUDA are there.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time

START = time.perf_counter()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# ViT variants (HF ViT layout: exact GELU, layer-norm eps 1e-12).
MODELS = {
    "tiny": dict(patch_size=8, hidden_size=64, num_layers=2, num_heads=2, mlp_dim=128),
    "S/16": dict(patch_size=16, hidden_size=384, num_layers=12, num_heads=6, mlp_dim=1536),
    "B/16": dict(patch_size=16, hidden_size=768, num_layers=12, num_heads=12, mlp_dim=3072),
    "L/16": dict(patch_size=16, hidden_size=1024, num_layers=24, num_heads=16, mlp_dim=4096),
    "H/14": dict(patch_size=14, hidden_size=1280, num_layers=32, num_heads=16, mlp_dim=5120),
}
FREEZES = ("full", "last_4_blocks", "head_only")
REMATS = ("off", "nothing_saveable", "dots_with_no_batch_dims_saveable", "dots_saveable")
# Dense bf16 tensor-core peaks (TFLOP/s, datasheet, SXM parts) by a substring of `device_kind`.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "B200": 2250.0, "L40S": 362.0}
ANCHOR_MODEL = ("B/16", 224)  # what torch_vit_anchor.py measures


@dataclasses.dataclass(frozen=True)
class Variant:
    """One measured configuration; `mode` "train" (the train step) or "eval" (the eval step)."""

    model: str = "B/16"
    resolution: int = 224
    batch: int = 256
    freeze: str = "full"
    attention: str = "auto"
    attention_pad: int = 64
    patch_embed: str = "auto"
    remat: str = "off"
    momentum_dtype: str = "float32"
    mode: str = "train"
    dtype: str = "bfloat16"
    classes: int = 3
    device_augment: bool = False
    cache_dir: str = ""
    profile_dir: str = ""
    note: str = ""


# ---- FLOP count --------------------------------------------------------------------------------
def model_flops(v: Variant) -> float:
    """Model FLOPs per image of one step: matmuls (2 per multiply-add) and attention's two products.

    Training counts the forward of everything, and twice the forward of what trains for the backward
    (activation and weight gradients); the patch embedding has no input gradient, so once.
    """
    m = MODELS[v.model]
    d, layers, p = m["hidden_size"], m["num_layers"], m["patch_size"]
    patches = (v.resolution // p) ** 2
    tokens = patches + 1
    block = 2 * tokens * (4 * d * d + 2 * d * m["mlp_dim"]) + 4 * tokens * tokens * d
    embed = 2 * patches * p * p * 3 * d
    head = 2 * d * v.classes
    forward = embed + layers * block + head
    if v.mode == "eval":
        return forward
    trained_blocks = {"full": layers, "last_4_blocks": min(4, layers), "head_only": 0}[v.freeze]
    return forward + 2 * (trained_blocks * block + head) + (embed if v.freeze == "full" else 0)


# ---- one variant, in its own process -----------------------------------------------------------
def bench_config(v: Variant):
    """The run config of a variant: a from-scratch ViT, the fast-path knobs, the freeze preset."""
    from vitjax import config as config_lib

    c = config_lib.base_config("classification")
    c.model.spec = dict(MODELS[v.model], image_size=v.resolution)
    c.model.dtype = v.dtype
    c.model.attention = v.attention
    c.model.attention_pad = v.attention_pad
    c.model.patch_embed = v.patch_embed
    c.model.remat = v.remat != "off"
    if c.model.remat:
        c.model.remat_policy = v.remat
    c.optim.freeze = "last_n_blocks" if v.freeze == "last_4_blocks" else v.freeze
    c.optim.last_n_blocks = min(4, MODELS[v.model]["num_layers"])
    c.optim.momentum_dtype = v.momentum_dtype
    c.data.device_augment = v.device_augment
    c.train.batch_size = v.batch
    c.train.progress = False
    c.compilation_cache = v.cache_dir
    config_lib.validate(c)
    return c


def measure(v: Variant, steps: int, warmup: int, repeats: int) -> dict:
    """Builds the variant's run on synthetic data, compiles and times its step; returns one row."""
    import jax
    import numpy as np

    from vitjax import modes, parallel
    from vitjax.checkpoints.preprocessing import Preprocessing
    from vitjax.data import pipeline
    from vitjax.data.records import ArraySource, ImageDataset
    from vitjax.train import setup

    if v.cache_dir:
        modes.enable_compilation_cache(v.cache_dir)
    config = bench_config(v)
    config.train.epochs = warmup + steps * repeats + 1  # one step per epoch: the schedule spans the run
    size = pipeline.train_image_size(Preprocessing.default(v.resolution), config.data) \
        if v.mode == "train" else (v.resolution, v.resolution)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (v.batch, *size, 3), dtype=np.uint8)
    labels = (np.arange(v.batch) % v.classes).astype(np.int32)
    dataset = ImageDataset("synthetic", {"train": ArraySource("synthetic", images, labels)},
                           [f"class_{i}" for i in range(v.classes)])
    with tempfile.TemporaryDirectory() as workdir:
        run = setup.build_run(config, workdir, dataset)
    local = {"image": images, "label": labels}
    if v.mode == "train":
        state = run.init_state()
        jitted, args = run.jit_train_step(), (state,)
    else:  # the parameters alone on the device, placed as the train state places them
        local["valid"] = np.ones(v.batch, bool)
        params = run.model.placed_params()
        jitted, args = run.jit_eval_step(), (params,)
    batch = parallel.global_batch(local, run.mesh)
    t0 = time.perf_counter()
    compiled = jitted.lower(*args, batch).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost

    if v.mode == "train":
        def advance(n):
            nonlocal state
            for _ in range(n):
                state, _ = compiled(state, batch)
            return state
    else:
        def advance(n):
            out = None
            for _ in range(n):
                out = compiled(params, batch)
            return out

    jax.block_until_ready(advance(1))
    start_s = time.perf_counter() - START
    jax.block_until_ready(advance(warmup))
    windows = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(advance(steps))
        windows.append((time.perf_counter() - t0) / steps)
    step_s = float(np.median(windows))
    if v.profile_dir:
        with jax.profiler.trace(v.profile_dir):
            jax.block_until_ready(advance(steps))

    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        peak, estimated = stats["peak_bytes_in_use"], False
    else:
        mem = compiled.memory_analysis()
        peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
                - mem.alias_size_in_bytes)
        estimated = True
    options = {k: str(val) for k, val in setup.backbone_options(config.model).items()}
    return dict(variant=dataclasses.asdict(v), device_kind=device.device_kind, devices=jax.device_count(),
                backbone=options, img_s=v.batch / step_s, step_ms=step_s * 1e3,
                step_ms_spread=(max(windows) - min(windows)) * 1e3,
                model_gflop_img=model_flops(v) / 1e9,
                xla_gflop_img=float(cost.get("flops", 0.0)) / v.batch / 1e9 if cost else None,
                peak_gib=peak / 2**30, peak_estimated=estimated, compile_s=compile_s, start_s=start_s)


def torch_inference(batch: int, steps: int, warmup: int, repeats: int) -> dict:
    """transformers ViT-B/16 eager inference in bf16 autocast on CUDA (the eval rows' anchor)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    model = ViTForImageClassification(ViTConfig(num_labels=3)).cuda().eval()
    x = torch.randn(batch, 3, 224, 224, device="cuda")

    def advance(n):
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            for _ in range(n):
                model(pixel_values=x)
        torch.cuda.synchronize()

    torch.cuda.reset_peak_memory_stats()
    advance(warmup + 1)
    windows = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        advance(steps)
        windows.append((time.perf_counter() - t0) / steps)
    windows.sort()
    step_s = windows[len(windows) // 2]
    return {"img_s": batch / step_s, "step_ms": step_s * 1e3, "batch": batch,
            "peak_gb": torch.cuda.max_memory_allocated() / 2**30}


# ---- the parent: variants, children, anchors, table --------------------------------------------
def child(kind: str, payload: dict, args, timeout: float) -> dict:
    """Runs `--child kind payload` in a fresh process; its result, or {"error": ...}."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, json.dumps(payload),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    lines = [l for l in done.stderr.splitlines() if l.strip()]
    reason = next((l for l in reversed(lines) if "RESOURCE_EXHAUSTED" in l or "Error" in l),
                  lines[-1] if lines else f"exit status {done.returncode}")
    return {"error": reason.strip()[:300]}


def variants(args) -> list[Variant]:
    split = lambda text, kind=str: [kind(x) for x in text.split(",") if x]
    base = dict(dtype=args.dtype, classes=args.classes, device_augment=args.device_augment)
    grid = itertools.product(split(args.model), split(args.resolution, int), split(args.batch, int),
                             split(args.freeze), split(args.attention), split(args.attention_pad, int),
                             split(args.patch_embed), split(args.remat), split(args.momentum_dtype))
    out = [Variant(m, r, b, f, a, ap, pe, rm, md, **base) for m, r, b, f, a, ap, pe, rm, md in grid]
    for name in split(args.freeze):
        if name not in FREEZES:
            raise SystemExit(f"--freeze {name!r}: use one of {FREEZES}")
    for name in split(args.remat):
        if name not in REMATS:
            raise SystemExit(f"--remat {name!r}: use one of {REMATS}")
    if args.eval_batch:
        kernels = itertools.product(split(args.model), split(args.resolution, int), split(args.attention),
                                    split(args.attention_pad, int), split(args.patch_embed))
        out += [Variant(m, r, args.eval_batch, "full", a, ap, pe, mode="eval", **base)
                for m, r, a, ap, pe in kernels]
    return out


def torch_anchors(args, tmp: str) -> dict:
    """The anchor script's results (run now, or read from a JSON it wrote), plus our inference anchor."""
    anchors = {}
    path = args.torch_anchor
    has_torch = importlib.util.find_spec("torch") is not None
    if path and path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            anchors.update(json.load(f))
    elif path and has_torch:
        out = os.path.join(tmp, "anchor.json")
        cmd = [sys.executable, path, "--batch", str(args.anchor_batch), "--steps", str(args.steps * args.repeats),
               "--only", args.anchors, "--json", out]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        if os.path.exists(out):
            with open(out, encoding="utf-8") as f:
                anchors.update(json.load(f))
        else:
            anchors["anchor_script"] = {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    elif path:
        anchors["anchor_script"] = {"error": "torch is not importable here"}
    if args.eval_batch and has_torch and importlib.util.find_spec("transformers") is not None \
            and not args.tiny:
        anchors["hf_eager_inference"] = child("torch_inference", {"batch": args.eval_batch}, args, args.timeout)
    return anchors


def ratio(row: dict, anchors: dict) -> str:
    v = row["variant"]
    if (v["model"], v["resolution"]) != ANCHOR_MODEL:
        return "-"
    ref = anchors.get("timm_compile" if v["mode"] == "train" else "hf_eager_inference", {})
    return f"{row['img_s'] / ref['img_s']:.2f}x" if ref.get("img_s") else "-"


def mfu(row: dict, peak_tflops: float | None) -> str:
    peak = peak_tflops or next((t for k, t in PEAK_TFLOPS.items() if k in row["device_kind"]), None)
    if not peak:
        return "-"
    return f"{100 * row['model_gflop_img'] * 1e9 * row['img_s'] / (peak * 1e12 * row['devices']):.1f}%"


def kernels(row: dict) -> str:
    """The attention and patch-embedding kernels a row ran ("auto" resolved), or those asked for."""
    v, used = row["variant"], row.get("backbone")
    if used is None:
        return f"attn={v['attention']}/{v['attention_pad']} pe={v['patch_embed']}"
    pad = f"/{used['attention_pad']}" if used["attention_pad"] != "0" else ""
    auto = lambda key: "auto:" if v[key] == "auto" else ""
    return f"attn={auto('attention')}{used['attention_impl']}{pad} pe={auto('patch_embed')}{used['patch_embed']}"


def label(row: dict) -> str:
    v = row["variant"]
    text = f"{v['model']} {v['resolution']} bs{v['batch']} {v['freeze'] if v['mode'] == 'train' else 'eval'} "
    text += kernels(row)
    if v["mode"] == "train":
        momentum = {"float32": "f32", "bfloat16": "bf16"}.get(v["momentum_dtype"], v["momentum_dtype"])
        text += f" remat={v['remat']} mom={momentum}"
    return text + (f" {v['note']}" if v["note"] else "")


def table(rows: list[dict], anchors: dict, peak_tflops: float | None = None) -> str:
    """The printed table: anchors first, then one line per vitjax variant."""
    names = {name: f"torch {name}" + (f" bs{res['batch']}" if "batch" in res else "")
             for name, res in anchors.items()}
    labels = [label(row) for row in rows]
    w = max([len("system / variant"), *map(len, labels), *map(len, names.values())])
    head = (f"{'system / variant':<{w}} {'img/s':>8} {'ms/step':>8} {'ratio':>6} {'MFU':>6} "
            f"{'GF/img':>7} {'XLA GF':>7} {'peak GiB':>9} {'compile':>8} {'start':>6}")
    lines = [head, "-" * len(head)]
    for name, res in anchors.items():
        if "img_s" in res:
            peak = f"{res['peak_gb']:.1f}" if "peak_gb" in res else "-"
            lines.append(f"{names[name]:<{w}} {res['img_s']:>8.0f} {res.get('step_ms', float('nan')):>8.1f} "
                         f"{'':>6} {'':>6} {'':>7} {'':>7} {peak:>9}")
        else:
            lines.append(f"{names[name]:<{w}} error: {res.get('error', res)}")
    for row, text in zip(rows, labels):
        if "error" in row:
            lines.append(f"{text:<{w}} error: {row['error']}")
            continue
        xla = f"{row['xla_gflop_img']:.3g}" if row["xla_gflop_img"] else "-"
        peak = f"{row['peak_gib']:.3g}{'*' if row['peak_estimated'] else ''}"
        lines.append(f"{text:<{w}} {row['img_s']:>8.0f} {row['step_ms']:>8.2f} {ratio(row, anchors):>6} "
                     f"{mfu(row, peak_tflops):>6} {row['model_gflop_img']:>7.3g} {xla:>7} {peak:>9} "
                     f"{row['compile_s']:>8.1f} {row['start_s']:>6.1f}")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="B/16", help=f"comma list of {list(MODELS)}")
    p.add_argument("--resolution", default="224", help="comma list of input sizes (px)")
    p.add_argument("--batch", default="256", help="comma list of global train batch sizes")
    p.add_argument("--freeze", default=",".join(FREEZES), help=f"comma list of {FREEZES}")
    p.add_argument("--attention", default="auto", help="comma list of auto, xla, cudnn")
    p.add_argument("--attention-pad", default="64", help="comma list: cudnn pads tokens to a multiple of this")
    p.add_argument("--patch-embed", default="auto", help="comma list of auto, conv, matmul")
    p.add_argument("--remat", default="off", help=f"comma list of {REMATS}")
    p.add_argument("--momentum-dtype", default="float32", help="comma list of float32, bfloat16")
    p.add_argument("--dtype", default="bfloat16", help="compute dtype")
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--device-augment", action="store_true", help="time the device-side crop/flip too")
    p.add_argument("--eval-batch", type=int, default=512, help="eval rows' batch; 0 = no eval rows")
    p.add_argument("--steps", type=int, default=10, help="steps per timed window")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps after the first")
    p.add_argument("--repeats", type=int, default=3, help="timed windows (the median is reported)")
    p.add_argument("--cache-check", action="store_true",
                   help="run the first train variant twice more over a fresh persistent compilation cache")
    p.add_argument("--profile", default="", help="write a jax.profiler trace of the first train variant here")
    p.add_argument("--torch-anchor", default="", help="torch_vit_anchor.py to run, or a JSON it wrote")
    p.add_argument("--anchors", default="hf_eager,timm_eager,timm_compile,hf_trainer",
                   help="the anchor script's --only")
    p.add_argument("--anchor-batch", type=int, default=256)
    p.add_argument("--peak-tflops", type=float, default=None, help="per-device peak for MFU")
    p.add_argument("--timeout", type=float, default=400, help="seconds allowed to each child process")
    p.add_argument("--json", default="", help="write every figure here")
    p.add_argument("--tiny", action="store_true",
                   help="a 2-block ViT at 32 px, batch 8, float32, few steps: seconds on a CPU")
    p.add_argument("--child", nargs=2, metavar=("KIND", "JSON"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.tiny:
        args.model, args.resolution, args.batch, args.dtype = "tiny", "32", "8", "float32"
        args.eval_batch = min(args.eval_batch, 8)
        args.steps, args.warmup, args.repeats = 2, 1, 2
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        kind, payload = args.child[0], json.loads(args.child[1])
        if kind == "torch_inference":
            result = torch_inference(payload["batch"], args.steps, args.warmup, args.repeats)
        else:
            result = measure(Variant(**payload), args.steps, args.warmup, args.repeats)
        print("RESULT " + json.dumps(result), flush=True)
        return
    plan = variants(args)
    if args.profile:
        first = next(i for i, v in enumerate(plan) if v.mode == "train")
        plan[first] = dataclasses.replace(plan[first], profile_dir=os.path.abspath(args.profile))
    with tempfile.TemporaryDirectory() as tmp:
        anchors = torch_anchors(args, tmp)
        rows = []
        for v in plan:
            result = child("measure", dataclasses.asdict(v), args, args.timeout)
            rows.append(result if "img_s" in result else {"variant": dataclasses.asdict(v), **result})
            print(table(rows[-1:], {}).splitlines()[-1], flush=True)
        if args.cache_check:
            first = next(v for v in plan if v.mode == "train")
            cache = os.path.join(tmp, "jax_cache")
            for note in ("cache cold", "cache warm"):
                v = dataclasses.replace(first, cache_dir=cache, note=f"[{note}]")
                result = child("measure", dataclasses.asdict(v), args, args.timeout)
                rows.append(result if "img_s" in result else {"variant": dataclasses.asdict(v), **result})
    text = table(rows, anchors, args.peak_tflops)
    kinds = sorted({r["device_kind"] for r in rows if "device_kind" in r})
    print(f"\n{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, device: {', '.join(kinds)}")
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"device_kind": kinds, "anchors": anchors, "rows": rows, "table": text}, f, indent=2)


if __name__ == "__main__":
    main()
