"""Images/s of vitjax's training input pipeline on a folder of generated 500x500 JPEGs (beans-like).

    python bench/input_pipeline.py                      # 2,000 images, 224x224 model input
    python bench/input_pipeline.py --images 400 --batches 10

Measures the host pipeline (decode -> augment -> batch) for 1, 2 and all cores (grain worker processes,
one reading thread each), without and with the decode cache (cache="ram", timed once filled), with
host-side augmentation (random-resized-crop + flip on the host, 224x224 shipped) and with the device
path (the host resizes once to 258x258 and ships uint8; crop/flip timed separately on the JAX backend).
Prints a table: images/s of wall time, and images per CPU-second (this process and its workers, via
psutil when installed), which stays meaningful on a shared host and says how many busy cores reach
--target img/s. The images are written once under --dir (default .bench/jpegs, git-ignored).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vitjax.data import device_augment, pipeline  # noqa: E402
from vitjax.data.config import default_config  # noqa: E402
from vitjax.data.sources import open_source  # noqa: E402


@dataclasses.dataclass(frozen=True)
class _Preprocessing:
    """Stand-in with the Preprocessing contract's training fields (used when the real one is absent)."""

    input_size: tuple[int, int] = (224, 224)
    resample: int = int(Image.Resampling.BILINEAR)

    def to_uint8(self, img):
        return np.asarray(img.resize(self.input_size[::-1], self.resample), np.uint8)


def _preprocessing(size: int):
    try:
        from vitjax.checkpoints.preprocessing import Preprocessing
        return Preprocessing.default(size)
    except ImportError:
        return _Preprocessing((size, size))


def make_images(folder: str, count: int, classes: int = 3) -> None:
    """Writes `count` 500x500 JPEGs of smooth random blobs (leaf-like texture) into class folders."""
    rng = np.random.default_rng(0)
    done = sum(len(files) for _, _, files in os.walk(folder)) if os.path.isdir(folder) else 0
    if done >= count:
        return
    yy, xx = np.mgrid[0:500, 0:500] / 500.0
    for i in range(count):
        path = os.path.join(folder, f"class_{i % classes}", f"img_{i:05d}.jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        f = rng.uniform(2, 12, 3)
        base = np.stack([np.sin(f[c] * xx + rng.uniform(0, 6)) * np.cos(f[c] * yy) for c in range(3)], -1)
        noise = rng.normal(0, 0.15, (500, 500, 3))
        pixels = np.clip((base * 0.4 + 0.5 + noise) * 255, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, quality=90)


def _cpu_seconds() -> float:
    """CPU time of this process and its live children (grain workers); 0 without psutil."""
    try:
        import psutil
    except ImportError:
        return 0.0
    me = psutil.Process()
    total = 0.0
    for proc in [me] + me.children(recursive=True):
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def measure(split, pre, cfg, batch_size: int, batches: int, warmup: int) -> tuple[float, float]:
    """(images/s of wall time, images per CPU-second) of the training iterator after `warmup` batches
    (worker start-up, cache filling). The second is robust to other load on the host."""
    it = pipeline.train_iterator(split, pre, cfg, batch_size=batch_size, seed=0)
    try:
        for _ in range(warmup):
            next(it)
        cpu, start = _cpu_seconds(), time.perf_counter()
        for _ in range(batches):
            next(it)
        wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
        images = batches * batch_size
        return images / wall, (images / cpu if cpu > 0 else float("nan"))
    finally:
        if hasattr(it, "close"):
            it.close()


def device_rate(pre, cfg, batch_size: int) -> float:
    """Images/s of the device-side crop+flip (on the default JAX backend) for uint8 cached-size batches."""
    import jax
    h, w = pipeline.train_image_size(pre, cfg)
    fn = jax.jit(device_augment.train_transform(cfg, pre.input_size, 3))
    batch = {"image": jax.numpy.zeros((batch_size, h, w, 3), jax.numpy.uint8),
             "label": jax.numpy.zeros((batch_size,), jax.numpy.int32)}
    jax.block_until_ready(fn(jax.random.key(0), batch))
    start, reps = time.perf_counter(), 10
    for i in range(reps):
        out = fn(jax.random.key(i), batch)
    jax.block_until_ready(out)
    return reps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="number of generated JPEGs")
    parser.add_argument("--dir", default=".bench/jpegs", help="folder for the generated JPEGs")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=60, help="timed batches per setting")
    parser.add_argument("--size", type=int, default=224, help="model input size")
    parser.add_argument("--target", type=int, default=4000, help="img/s the accelerator needs")
    args = parser.parse_args()

    folder = os.path.join(args.dir, str(args.images))
    make_images(folder, args.images)
    pre = _preprocessing(args.size)
    base = default_config()
    base.source, base.split_fractions = folder, (1.0, 0.0, 0.0)
    base.validation_split = base.test_split = "train"  # Time the whole folder; no carving.
    split = open_source(base).splits["train"]
    per_epoch = len(split) // args.batch_size
    cores = sorted({1, 2, os.cpu_count() or 1})
    print(f"{len(split)} JPEGs 500x500 -> {args.size}x{args.size}, batch {args.batch_size}, "
          f"{os.cpu_count()} cores on this host")
    print(f"{'workers':>7} {'cache':>5} {'augment':>7} {'img/s':>8} {'img/cpu-s':>9}")
    per_cpu = {}
    for augment in ("host", "device"):
        for cache in ("none", "ram"):
            for n in cores:
                cfg = default_config()
                cfg.update(dict(workers=n, read_threads=1, prefetch=2, cache=cache,
                                device_augment=augment == "device"))
                # With the cache, the warm-up is one epoch: every image decoded once, then cache reads.
                warmup = per_epoch + 2 if cache == "ram" else 3
                rate, cpu_rate = measure(split, pre, cfg, args.batch_size, args.batches, warmup)
                per_cpu.setdefault((cache, augment), []).append(cpu_rate)
                print(f"{n:>7} {cache:>5} {augment:>7} {rate:>8.0f} {cpu_rate:>9.0f}", flush=True)
    for (cache, augment), rates in per_cpu.items():
        best = np.nanmax(rates)
        print(f"cache={cache:<4} augment={augment:<6}: ~{best:.0f} img per CPU-second -> "
              f"~{int(np.ceil(args.target / best))} busy cores for {args.target} img/s")
    cfg = default_config()
    cfg.device_augment = True
    import jax
    print(f"device-side crop+flip on {jax.default_backend()}: "
          f"{device_rate(pre, cfg, args.batch_size):.0f} img/s")


if __name__ == "__main__":
    main()
