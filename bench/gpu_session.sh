#!/usr/bin/env bash
# One device-tool call of the throughput benchmark (bench/NOTES.md gives the call). Each stage fits
# one 10-minute call and measures the PyTorch anchors in the same call, so every ratio is side by side.
#
#   bash bench/gpu_session.sh main     anchors (all four) + ViT-B/16 @224 bs256: full / last-4 / head-only
#                                      fine-tune, eval bs512, persistent-cache cold/warm, a profile
#   bash bench/gpu_session.sh levers   timm+compile + B/16 full fine-tune lever by lever (attention x
#                                      patch embedding, bf16 momentum, batch 512)
#   bash bench/gpu_session.sh memory   timm+compile + L/16 @224 bs128 (remat policies), B/16 bs768/1024
#
# Carried (git-ignored): .bench/wheels (packages vitjax imports that the GPU image lacks) and
# .bench/anchor/torch_vit_anchor.py. Everything lands in $OUT: env.txt, <stage>.log, <stage>.json,
# torch.json, and for main profile.txt + profile.trace.json.gz (read it with bench/profile_summary.py).
set -uo pipefail
stage=${1:?stage: main, levers or memory}
out=${OUT:-/tmp/bench_out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .bench/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
# JAX takes 75% of the GPU by default; each variant runs alone, so let it have nearly all of it
# (the largest batch that fits is one of the figures asked for).
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.95
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
    python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__,
                'optax', optax.__version__, jax.devices())"
} 2>&1 | tee "$out/env.txt"

anchors=timm_compile
[ "$stage" = main ] && anchors=hf_eager,timm_eager,timm_compile,hf_trainer
python3 .bench/anchor/torch_vit_anchor.py --batch 256 --only "$anchors" --json "$out/torch.json" 2>&1 \
    | tee "$out/$stage.log"
bench() { python3 bench/train_throughput.py --torch-anchor "$out/torch.json" --timeout 300 "$@" 2>&1 \
    | tee -a "$out/$stage.log"; }

case $stage in
    main)
        bench --cache-check --profile /tmp/profile --json "$out/main.json"
        python3 bench/profile_summary.py /tmp/profile 2>&1 | tee "$out/profile.txt"
        find /tmp/profile -name '*.trace.json.gz' -exec cp {} "$out/profile.trace.json.gz" \; ;;
    levers)
        bench --freeze full --attention xla,cudnn --patch-embed conv,matmul --eval-batch 0 \
            --json "$out/levers.json"
        bench --freeze full --batch 256,512 --momentum-dtype bfloat16 --eval-batch 0 \
            --json "$out/levers_more.json" ;;
    memory)
        bench --model L/16 --batch 128 --freeze full --remat off,nothing_saveable,dots_with_no_batch_dims_saveable \
            --eval-batch 0 --json "$out/memory.json"
        bench --batch 768,1024 --freeze full --eval-batch 0 --json "$out/memory_b16.json" ;;
    *)
        echo "unknown stage $stage: main, levers or memory" >&2
        exit 2 ;;
esac
