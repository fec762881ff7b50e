"""Two XLA:CPU behaviours behind the slow digits train step, each reduced to a few lines of plain JAX.

    python bench/xla_cpu_repro.py faults      # per-call page faults of a large scratch buffer
    python bench/xla_cpu_repro.py faults --keep   # the same after vitjax's keep_host_buffers()
    python bench/xla_cpu_repro.py attention   # jax.nn.dot_product_attention's backward vs einsums

`faults`: XLA:CPU allocates an executable's scratch ("temp") buffer on every call. glibc serves blocks
over its mmap threshold (at most 32 MB), and any block over 64 MB from a thread's secondary arena,
with a fresh mmap that is unmapped on free, so every call touches fresh pages (measured with jax
0.10.2: ~1.08M minor faults per call here; 3.2k with the settings below). PyTorch allocates per tensor (each under the threshold) and
reuses its heap. Run it twice, the second time with `MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=1073741824` in the environment, or with `--keep` (the same settings through
mallopt: `vitjax.train.fast_paths.keep_host_buffers`), to see the faults go.

`attention`: the gradient of `jax.nn.dot_product_attention(implementation="xla")` at the demo's shape
([64, 65, 4, 24]) against the same attention written as two einsums and `jax.nn.softmax`. The former
vmaps over head groups; XLA fuses the softmax backward with the dP = dO V^T batched dot into one
YNNPACK fusion (`--xla_dump_to`: a `__ynn_fusion` rooted at `reduce_sum`), which runs at a few GFLOP/s.
Prints the minimum wall and process-CPU ms per call of each over `--iters` calls. Alone, the gap is
small (process CPU 13.8 vs 10.2 ms on the shared 2-core box); inside the demo's whole train step the
four attention backwards took 79 ms vs 24 ms (sum of per-op minima of a profiled step, bench/NOTES.md).
"""

from __future__ import annotations

import argparse
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np


def faults() -> None:
    f = jax.jit(lambda a: (jnp.sin(a) @ jnp.cos(a)).sum())  # two 64 MB temporaries
    a = jnp.ones((4096, 4096))
    f(a).block_until_ready()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        f(a).block_until_ready()
    per_call = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5
    print(f"minor page faults per call: {per_call:.0f} (the two temporaries alone are {128 * 256} pages of 4 KiB)")


def attention(iters: int) -> None:
    def einsum_attention(q, k, v):
        logits = jnp.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1]).astype(q.dtype)
        return jnp.einsum("bnts,bsnh->btnh", jax.nn.softmax(logits, axis=-1), v)

    variants = {"jax.nn.dot_product_attention": lambda q, k, v: jax.nn.dot_product_attention(
        q, k, v, implementation="xla"), "einsum + softmax": einsum_attention}
    q, k, v = (jnp.asarray(np.random.default_rng(s).standard_normal((64, 65, 4, 24)), jnp.float32) for s in range(3))
    for name, fn in variants.items():
        grad = jax.jit(jax.grad(lambda q, k, v: (fn(q, k, v) ** 2).sum(), argnums=(0, 1, 2)))
        jax.block_until_ready(grad(q, k, v))
        walls, cpus = [], []
        for _ in range(iters):
            cpu, wall = time.process_time(), time.perf_counter()
            jax.block_until_ready(grad(q, k, v))
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        print(f"{name:30s} grad: wall min {min(walls) * 1e3:6.2f} ms, process CPU min {min(cpus) * 1e3:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["faults", "attention"])
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="faults: call keep_host_buffers() first")
    args = parser.parse_args()
    if args.keep:
        from vitjax.train.fast_paths import keep_host_buffers

        print("keep_host_buffers applied:", keep_host_buffers())
    print(f"jax {jax.__version__}, backend {jax.default_backend()}")
    faults() if args.what == "faults" else attention(args.iters)


if __name__ == "__main__":
    main()
