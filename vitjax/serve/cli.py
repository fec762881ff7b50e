"""`vitjax serve --model DIR [flags]` (or `python -m vitjax.serve ...`): the service under uvicorn.

DIR is a model folder (`<workdir>/best`, `best_vitjax`: the JAX backend) or an export folder
(`--mode export --format onnx|onnx-int8|stablehlo`). It listens on 127.0.0.1 unless --host says
otherwise; uvicorn finishes the requests in flight on SIGTERM before it exits. `--workers N` runs N
server processes on the one port (uvicorn's), each with its own model and batcher: one event loop
parses HTTP on one core, so N > 1 serves more requests/s on more cores, at N times the memory.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from vitjax.serve.app import Limits

_DEFAULTS = Limits()
_WORKER_ENV = "VITJAX_SERVE_WORKER"  # the model, limits and threads, as JSON, for --workers > 1


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vitjax serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a model folder (best/, best_vitjax/) or an export folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api_key", default=os.environ.get("VITJAX_API_KEY"),
                        help="require 'Authorization: Bearer KEY' on /predict (default: $VITJAX_API_KEY)")
    parser.add_argument("--max_batch", type=int, default=_DEFAULTS.max_batch, help="images per model call")
    parser.add_argument("--max_wait_ms", type=float, default=_DEFAULTS.max_wait_ms,
                        help="how long a batch waits for more requests (default 0: a batch takes the "
                             "requests that queued while the model ran)")
    parser.add_argument("--max_images", type=int, default=_DEFAULTS.max_images, help="images per request")
    parser.add_argument("--max_pixels", type=int, default=_DEFAULTS.max_pixels, help="pixels per image")
    parser.add_argument("--max_request_bytes", type=int, default=_DEFAULTS.max_request_bytes)
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes, each with its own model (more cores, more memory)")
    parser.add_argument("--access_log", action="store_true",
                        help="log every request (off by default: a line per request costs throughput)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    import uvicorn

    from vitjax.serve.app import create_app
    from vitjax.serve.backends import default_threads, open_backend

    if not os.path.isdir(args.model):
        print(f"vitjax serve: --model {args.model} is not a folder.", file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"vitjax serve: --workers {args.workers}: give 1 or more.", file=sys.stderr)
        return 2
    threads = default_threads(args.workers)
    try:
        backend = open_backend(args.model, threads)
    except (FileNotFoundError, ValueError, KeyError) as error:
        print(f"vitjax serve: {error}", file=sys.stderr)
        return 2
    limits = Limits(args.max_request_bytes, args.max_images, args.max_pixels, args.max_batch,
                    args.max_wait_ms, args.api_key)
    server = dict(host=args.host, port=args.port, log_level="info", access_log=args.access_log,
                  timeout_graceful_shutdown=30)
    if args.workers == 1:
        uvicorn.run(create_app(backend, limits), **server)
        return 0
    del backend  # checked; each worker opens its own
    os.environ[_WORKER_ENV] = json.dumps({"model": args.model, "threads": threads,
                                          "limits": dataclasses.asdict(limits)})
    uvicorn.run("vitjax.serve.cli:worker_app", factory=True, workers=args.workers, **server)
    return 0


def worker_app():
    """The app of one `--workers` process (uvicorn imports this module in each and calls this)."""
    from vitjax.serve.app import create_app
    from vitjax.serve.backends import open_backend

    spec = json.loads(os.environ[_WORKER_ENV])
    return create_app(open_backend(spec["model"], spec["threads"]), Limits(**spec["limits"]))
