"""The prediction service under load, against the way the guides serve a model: transformers'
`pipeline("image-classification")` behind FastAPI, on the same model and machine, in one run.

    python bench/serve_load.py --model runs/digits/best --concurrency 1,8,32

Each server runs in its own uvicorn process on 127.0.0.1 (ours: `vitjax serve`, with --backend's
model: the JAX model, or an ONNX / int8 export written here); a client keeps `concurrency` requests
of one PNG each in flight, `--requests` per level (bounded), and reports requests/s, the p50, p95
and p99 latency and the server's CPU time per request. The baseline runs as the guides write it,
and again with torch on one thread (set by a user who knows; on a busy machine torch's default
threads wait on each other between small ops). All servers are up together and take turns, level by
level, for `--rounds` rounds, so a shared machine's changing load hits them alike; the server CPU
time per request is the figure that load changes least.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import io
import os
import socket
import subprocess
import sys
import tempfile
import time

import aiohttp
import httpx
import numpy as np
import psutil
from fastapi import FastAPI, File, UploadFile
from PIL import Image


def baseline_app(folder: str, torch_threads: int):
    """The guides' service: a transformers pipeline in a FastAPI endpoint (a `def` endpoint: FastAPI
    runs it in its thread pool, so concurrent requests run the model side by side)."""
    import torch
    import transformers

    if torch_threads:
        torch.set_num_threads(torch_threads)
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a server process (not of worker processes it started)."""
    return sum(psutil.Process(pid).cpu_times()[:2])


def multipart(png: bytes) -> tuple[bytes, dict]:
    """One request's body (the PNG as the file field `files`) and headers, encoded once for all."""
    boundary = "vitjax-bench-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="x.png"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def load(port: int, png: bytes, concurrency: int, requests: int,
               pid: int | None = None) -> tuple[float, list[float], float]:
    """(requests/s, latencies in s, CPU seconds of the server process `pid` meanwhile) of `requests`
    POSTs with `concurrency` in flight, after a warm-up. The client is
    aiohttp with the body encoded once: httpx's client spent 2-5 ms of CPU per request here (more the
    more connections), as much as the servers, so it set the pace rather than the servers."""
    body, headers = multipart(png)
    latencies, left = [], [requests]
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=connector, timeout=timeout) as client:
        async def one() -> float:
            start = time.perf_counter()
            async with client.post("/predict?top_k=3", data=body, headers=headers) as response:
                response.raise_for_status()
                await response.read()
            return time.perf_counter() - start

        async def worker():
            while left[0] > 0:
                left[0] -= 1
                latencies.append(await one())

        for _ in range(3):  # warm: connections, thread-pool threads, first calls
            await asyncio.gather(*(one() for _ in range(concurrency)))
        cpu, begin = cpu_seconds(pid) if pid else 0.0, time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        rate = requests / (time.perf_counter() - begin)
        return rate, latencies, (cpu_seconds(pid) - cpu if pid else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a Hugging Face model folder (e.g. runs/digits/best)")
    parser.add_argument("--backend", default="onnx", choices=["jax", "onnx", "onnx-int8"])
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=96, help="requests per server, level and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="also run `vitjax serve --workers N` when N > 1")
    parser.add_argument("--serve_baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--torch_threads", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only: no hub look-ups
    if args.serve_baseline:  # the baseline server's own process
        import uvicorn
        uvicorn.run(baseline_app(args.model, args.torch_threads), host="127.0.0.1", port=args.port, log_level="warning")
        return

    served = args.model
    if args.backend != "jax":
        from vitjax.deploy import artifacts
        served = artifacts.export(args.model, args.backend, os.path.join(tempfile.mkdtemp(), args.backend))
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    png = buffer.getvalue()
    baseline = [sys.executable, __file__, "--model", args.model, "--serve_baseline"]
    servers = {  # the baseline as the guides write it, and with torch on one thread per request, which
        # is faster on a busy machine (torch's default threads wait on each other between small ops)
        f"vitjax serve ({args.backend})": [sys.executable, "-m", "vitjax.serve", "--model", served],
        **({f"vitjax serve ({args.backend}, --workers {args.workers})": [
            sys.executable, "-m", "vitjax.serve", "--model", served, "--workers", str(args.workers)]}
           if args.workers > 1 else {}),
        "transformers.pipeline + FastAPI": baseline,
        "transformers.pipeline + FastAPI, torch 1 thread": [*baseline, "--torch_threads", "1"],
    }
    levels = [int(c) for c in args.concurrency.split(",")]
    print(f"model {args.model}; {os.cpu_count()} CPUs; {args.rounds} rounds of {args.requests} requests per "
          f"server and level, one image each, servers taking turns")
    processes, ports = {}, {}
    try:
        for name, command in servers.items():  # all up at once: an idle server takes no CPU
            ports[name] = free_port()
            processes[name] = start([*command, "--port", str(ports[name])], ports[name])
        seconds, latencies, cpu = collections.Counter(), collections.defaultdict(list), collections.Counter()
        for _ in range(args.rounds):  # turns within a round: the machine's other load hits every server alike
            for concurrency in levels:
                for name in servers:
                    rate, times, seconds_cpu = asyncio.run(
                        load(ports[name], png, concurrency, args.requests, processes[name].pid))
                    cpu[name, concurrency] += seconds_cpu
                    seconds[name, concurrency] += args.requests / rate
                    latencies[name, concurrency] += times
    finally:
        for process in processes.values():
            process.terminate()
            process.wait(60)
    print("| server | concurrency | req/s | p50 ms | p95 ms | p99 ms | server CPU ms / request |")
    print("|---|---|---|---|---|---|---|")
    total = args.rounds * args.requests
    for name in servers:
        for concurrency in levels:
            p50, p95, p99 = (1000 * q for q in np.percentile(latencies[name, concurrency], [50, 95, 99]))
            # a --workers server's work is in its worker processes, which uvicorn may restart: not counted
            shown_cpu = "-" if "--workers" in name else f"{1000 * cpu[name, concurrency] / total:.2f}"
            print(f"| {name} | {concurrency} | {total / seconds[name, concurrency]:.1f} | {p50:.1f} | {p95:.1f} | "
                  f"{p99:.1f} | {shown_cpu} |")
    ours = [name for name in servers if name.startswith("vitjax")]
    baselines = [name for name in servers if name not in ours]
    for name in ours:
        for concurrency in levels:
            best = min(baselines, key=lambda b: seconds[b, concurrency])
            print(f"{name}, concurrency {concurrency}: {seconds[best, concurrency] / seconds[name, concurrency]:.2f}x "
                  f"the throughput of the faster pipeline service ({best})")

if __name__ == "__main__":
    main()
