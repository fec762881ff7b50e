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
import ipaddress
import json
import os
import sys

from vitjax import storage
from vitjax.serve.limits import Limits

_DEFAULTS = Limits()
_WORKER_ENV = "VITJAX_SERVE_WORKER"  # the model, limits and threads, as JSON, for --workers > 1
_KEY_ENV = "VITJAX_API_KEY"


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """--help with each flag's default, where it has one."""

    def _get_help_string(self, action):
        return action.help if action.default in (None, False) else super()._get_help_string(action)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port: give 1 to 65535")
    return int(text)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vitjax serve", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     formatter_class=_Help)
    parser.add_argument("--model", required=True, help="a model folder (best/, best_vitjax/) or an export folder")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (127.0.0.1: this machine only; another address without an "
                             "API key is warned about)")
    parser.add_argument("--port", type=_port, default=8000, help="TCP port (1-65535)")
    parser.add_argument("--api_key_file", default=None,
                        help=f"a file holding the API key: every path but /health and the page / then needs "
                             f"'Authorization: Bearer KEY' (or set ${_KEY_ENV}; never on the command line, "
                             f"where ps shows it)")
    parser.add_argument("--api_key", default=None, help=argparse.SUPPRESS)  # refused: see _api_key
    parser.add_argument("--max_batch", type=int, default=_DEFAULTS.max_batch, help="images per model call")
    parser.add_argument("--max_wait_ms", type=float, default=_DEFAULTS.max_wait_ms,
                        help="how long a batch waits for more requests (0: a batch takes the requests that "
                             "queued while the model ran)")
    parser.add_argument("--max_images", type=int, default=_DEFAULTS.max_images, help="images per request")
    parser.add_argument("--max_pixels", type=int, default=_DEFAULTS.max_pixels, help="pixels (width x height) per image")
    parser.add_argument("--max_request_pixels", type=int, default=_DEFAULTS.max_request_pixels,
                        help="pixels of all images in one request")
    parser.add_argument("--max_pixels_in_flight", type=int, default=_DEFAULTS.max_pixels_in_flight,
                        help="decoded pixels of all requests being answered at once; a request beyond it gets "
                             "503 (try again)")
    parser.add_argument("--max_request_bytes", type=int, default=_DEFAULTS.max_request_bytes,
                        help="bytes of one request's body")
    parser.add_argument("--body_timeout_s", type=float, default=_DEFAULTS.body_timeout_s,
                        help="seconds a request's body may take to arrive (a slower or stalled upload gets 408)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes, each with its own model (more cores, more memory)")
    parser.add_argument("--access_log", action="store_true",
                        help="log every request (off by default: a line per request costs throughput)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: give 1 or more.")
    args.api_key = _api_key(args, parser)
    try:
        args.limits = Limits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Limits)})
    except ValueError as error:
        parser.error(str(error))
    if _beyond_this_machine(args.host) and not args.api_key:
        _warn(f"--host {args.host} listens beyond this machine and no API key is set: anyone who reaches "
              f"it can use the model. Set ${_KEY_ENV} or --api_key_file.")
    return args


def _api_key(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str | None:
    """The key from --api_key_file or $VITJAX_API_KEY (None: no key), never from the command line."""
    if args.api_key is not None:
        parser.error(f"--api_key: a key on the command line shows in `ps` to every user of this machine; "
                     f"put it in a file (--api_key_file FILE) or in ${_KEY_ENV}.")
    if args.api_key_file is not None:
        try:
            with open(args.api_key_file, encoding="utf-8") as f:
                key = f.read().strip()
        except (OSError, UnicodeDecodeError) as error:
            parser.error(f"--api_key_file {args.api_key_file}: cannot read it ({error}).")
        if not key:
            parser.error(f"--api_key_file {args.api_key_file} is empty: write the key in it.")
        return key
    key = os.environ.get(_KEY_ENV)
    if key is not None and not key.strip():
        _warn(f"${_KEY_ENV} is set but empty: the service runs WITHOUT an API key. Unset it, or give a key.")
        return None
    return key


def _beyond_this_machine(host: str) -> bool:
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return host != "localhost"


def _warn(message: str) -> None:
    print(f"vitjax serve: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if not storage.isdir(args.model):
        print(f"vitjax serve: --model {args.model} is not a folder.", file=sys.stderr)
        return 2
    with storage.local_copy(args.model) as local:  # a model on object storage: served from a local copy
        return _serve(args, local)


def _serve(args, model: str) -> int:
    import uvicorn

    from vitjax.serve.app import create_app
    from vitjax.serve.backends import default_threads, open_backend

    threads = default_threads(args.workers)
    try:
        backend = open_backend(model, threads)
    except (FileNotFoundError, ValueError, KeyError) as error:
        print(f"vitjax serve: {error}", file=sys.stderr)
        return 2
    limits = args.limits
    server = dict(host=args.host, port=args.port, log_level="info", access_log=args.access_log,
                  timeout_graceful_shutdown=30)
    if args.workers == 1:
        uvicorn.run(create_app(backend, limits), **server)
        return 0
    del backend  # checked; each worker opens its own
    os.environ[_WORKER_ENV] = json.dumps({"model": model, "threads": threads,
                                          "limits": dataclasses.asdict(limits)})
    uvicorn.run("vitjax.serve.cli:worker_app", factory=True, workers=args.workers, **server)
    return 0


def worker_app():
    """The app of one `--workers` process (uvicorn imports this module in each and calls this)."""
    from vitjax.serve.app import create_app
    from vitjax.serve.backends import open_backend

    spec = json.loads(os.environ[_WORKER_ENV])
    return create_app(open_backend(spec["model"], spec["threads"]), Limits(**spec["limits"]))
