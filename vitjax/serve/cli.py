"""`vitjax serve --model DIR [flags]` (or `python -m vitjax.serve ...`): the service under uvicorn.

DIR is a model folder (`<workdir>/best`, `best_vitjax`: the JAX backend) or an export folder
(`--mode export --format onnx|onnx-int8|stablehlo`). It listens on 127.0.0.1 unless --host says
otherwise; uvicorn finishes the requests in flight on SIGTERM before it exits.
"""
from __future__ import annotations

import argparse
import os
import sys

from vitjax.serve.app import Limits

_DEFAULTS = Limits()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vitjax serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a model folder (best/, best_vitjax/) or an export folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api_key", default=os.environ.get("VITJAX_API_KEY"),
                        help="require 'Authorization: Bearer KEY' on /predict (default: $VITJAX_API_KEY)")
    parser.add_argument("--max_batch", type=int, default=_DEFAULTS.max_batch, help="images per model call")
    parser.add_argument("--max_wait_ms", type=float, default=_DEFAULTS.max_wait_ms,
                        help="how long a batch waits for more requests")
    parser.add_argument("--max_images", type=int, default=_DEFAULTS.max_images, help="images per request")
    parser.add_argument("--max_pixels", type=int, default=_DEFAULTS.max_pixels, help="pixels per image")
    parser.add_argument("--max_request_bytes", type=int, default=_DEFAULTS.max_request_bytes)
    parser.add_argument("--access_log", action="store_true",
                        help="log every request (off by default: a line per request costs throughput)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    import uvicorn

    from vitjax.serve.app import create_app
    from vitjax.serve.backends import open_backend

    if not os.path.isdir(args.model):
        print(f"vitjax serve: --model {args.model} is not a folder.", file=sys.stderr)
        return 2
    try:
        backend = open_backend(args.model)
    except (FileNotFoundError, ValueError, KeyError) as error:
        print(f"vitjax serve: {error}", file=sys.stderr)
        return 2
    limits = Limits(args.max_request_bytes, args.max_images, args.max_pixels, args.max_batch,
                    args.max_wait_ms, args.api_key)
    uvicorn.run(create_app(backend, limits), host=args.host, port=args.port, log_level="info",
                access_log=args.access_log, timeout_graceful_shutdown=30)
    return 0
