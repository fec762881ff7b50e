"""The prediction service under load, against the way the guides serve a model: transformers'
`pipeline("image-classification")` behind FastAPI, on the same model and machine, in one run.

    python bench/serve_load.py --model runs/digits/best --concurrency 1,8,32

Each server runs in its own uvicorn process on 127.0.0.1 (ours: `vitjax serve`, with --backend's
model: the JAX model, or an ONNX / int8 export written here); a client keeps `concurrency` requests
of one PNG each in flight, `--requests` per level (bounded), and reports requests/s and the p50, p95
and p99 latency. The machine is shared: compare servers within a run.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np
from fastapi import FastAPI, File, UploadFile
from PIL import Image


def baseline_app(folder: str):
    """The guides' service: a transformers pipeline in a FastAPI endpoint."""
    import transformers

    pipe = transformers.pipeline("image-classification", model=folder, device="cpu")
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/predict")
    def predict(files: UploadFile = File(...), top_k: int = 3):
        return pipe(Image.open(io.BytesIO(files.file.read())), top_k=top_k)

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], port: int) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise TimeoutError(" ".join(command))


async def load(port: int, png: bytes, concurrency: int, requests: int) -> tuple[float, list[float]]:
    """(requests/s, latencies in s) of `requests` POSTs with `concurrency` in flight."""
    latencies, queue = [], asyncio.Queue()
    for _ in range(requests):
        queue.put_nowait(None)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300, limits=limits) as client:
        async def worker():
            while not queue.empty():
                queue.get_nowait()
                start = time.perf_counter()
                response = await client.post("/predict?top_k=3", files={"files": ("x.png", png)})
                response.raise_for_status()
                latencies.append(time.perf_counter() - start)

        await client.post("/predict?top_k=3", files={"files": ("x.png", png)})  # warm
        begin = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return requests / (time.perf_counter() - begin), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a Hugging Face model folder (e.g. runs/digits/best)")
    parser.add_argument("--backend", default="onnx", choices=["jax", "onnx", "onnx-int8"])
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=96, help="requests per concurrency level")
    parser.add_argument("--serve_baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only: no hub look-ups
    if args.serve_baseline:  # the baseline server's own process
        import uvicorn
        uvicorn.run(baseline_app(args.model), host="127.0.0.1", port=args.port, log_level="warning")
        return

    served = args.model
    if args.backend != "jax":
        from vitjax.deploy import artifacts
        served = artifacts.export(args.model, args.backend, os.path.join(tempfile.mkdtemp(), args.backend))
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    png = buffer.getvalue()
    servers = {
        f"vitjax serve ({args.backend})": [sys.executable, "-m", "vitjax.serve", "--model", served],
        "transformers.pipeline + FastAPI": [sys.executable, __file__, "--model", args.model, "--serve_baseline"],
    }
    print(f"model {args.model}; {os.cpu_count()} CPUs; {args.requests} requests per level, one image each")
    print("| server | concurrency | req/s | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    results = {}
    for name, command in servers.items():
        port = free_port()
        process = start([*command, "--port", str(port)], port)
        try:
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                rate, latencies = asyncio.run(load(port, png, concurrency, args.requests))
                p50, p95, p99 = (1000 * q for q in np.percentile(latencies, [50, 95, 99]))
                results[name, concurrency] = rate
                print(f"| {name} | {concurrency} | {rate:.1f} | {p50:.1f} | {p95:.1f} | {p99:.1f} |", flush=True)
        finally:
            process.terminate()
            process.wait(60)
    ours, theirs = servers
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        print(f"concurrency {concurrency}: {results[ours, concurrency] / results[theirs, concurrency]:.2f}x "
              f"the pipeline service's throughput")


if __name__ == "__main__":
    main()
