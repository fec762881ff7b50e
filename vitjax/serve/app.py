"""The FastAPI application: `POST /predict`, `GET /health`, `GET /metadata`, and `GET /`, a page to
try the model in a browser (vitjax.serve.page).

`/predict` takes images as multipart files (field `files`, `?top_k=`) or JSON
`{"images": [base64, ...], "top_k": k}` and answers `{"predictions": [record, ...]}`, one record per
image: {"image": its file name (or "image_<i>")} and the task plugin's own record
(`Task.prediction_records`, as `--mode predict` writes it; files a plugin writes, such as segmentation
masks and drawings, come back inline as base64 PNG). Images are read and prepared as `--mode predict`
prepares them (`vitjax.trained.model_input`). Bad input is a 4xx naming the problem, and the
server stays up. `Limits` bounds request bytes, the time their upload may take, images per request,
pixels per image and per request, and the decoded pixels of all requests in flight (beyond it: 503,
try again); when the last request in flight ends, freed memory goes back to the OS. With an API key,
every path but `/health` and the page needs `Authorization: Bearer <key>`.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ctypes
import dataclasses
import functools
import io
import json
import os
import re
import reprlib
import secrets
import signal
import tempfile
import threading

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image, UnidentifiedImageError
from starlette.exceptions import HTTPException as FormError
from starlette.requests import ClientDisconnect

from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.data.transforms import load_rgb
from vitjax.errors import BadValue
from vitjax.trained import make_task, model_input, resolve_top_k
from vitjax.serve.batching import DynamicBatcher
from vitjax.serve.limits import Limits
from vitjax.serve.page import PAGE


# Requests whose images hold at most this many pixels in all are decoded, and their records made, on
# the event loop (a 64x64 PNG decodes in ~0.2 ms); handing them to a thread costs more CPU than that
# once requests run concurrently (the threads contend for the GIL). Bigger ones go to the thread pool.
INLINE_PIXELS = 256 * 256
MEMORY_TMP = "/dev/shm"  # Linux's memory-backed temporary folder


def _bad(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


def _inline_files(value, folder: str):
    """Paths to files under `folder` in a record, replaced by the files' base64 content."""
    if isinstance(value, dict):
        return {k: _inline_files(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [_inline_files(v, folder) for v in value]
    if isinstance(value, str) and value.startswith(folder + os.sep) and os.path.isfile(value):
        with open(value, "rb") as f:
            return base64.b64encode(f.read()).decode("ascii")
    return value


@contextlib.contextmanager
def _readable(name: str):
    """PIL's errors on a file that is no image, or a broken one, as a 400 naming the file."""
    try:
        yield
    except UnidentifiedImageError:
        raise _bad(400, f"{name!r} is not an image (PIL cannot identify it; send PNG, JPEG, ...).") from None
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        error = error.__cause__ or error  # load_rgb's BadValue names the decoder's error
        raise _bad(400, f"{name!r} is not a readable image ({type(error).__name__}: {error}).") from None


class Predictor:
    """Decodes images, batches them through the backend and turns outputs into the task's records."""

    def __init__(self, backend, limits: Limits):
        self.backend, self.limits, self.info = backend, limits, backend.info
        self.preprocessing = Preprocessing.from_hf(self.info["preprocessing"])
        self.task = make_task(self.info["task_config"], self.info["class_names"])
        self.pixels = model_input(self.task, self.preprocessing)
        # Each request's records get a folder for the files a task writes (masks), made in memory
        # where the OS offers it: on a disk, making and removing a folder can wait milliseconds.
        memory = MEMORY_TMP if os.path.isdir(MEMORY_TMP) and os.access(MEMORY_TMP, os.W_OK) else None
        self.scratch = tempfile.TemporaryDirectory(prefix="vitjax-serve-", dir=memory)
        self.in_flight = PixelBudget(limits.max_pixels_in_flight)
        self.batcher = DynamicBatcher(backend.run, self.info["input"]["shape"][1:], limits.max_batch,
                                      limits.max_wait_ms, backend.fixed_sizes)

    def open_image(self, name: str, data: bytes) -> Image.Image:
        """The image in `data`, its header read (size checked against the limit), not yet decoded."""
        if not data:
            raise _bad(400, f"image {name!r} is empty (0 bytes).")
        with _readable(name):
            image = Image.open(io.BytesIO(data))
        pixels = image.width * image.height
        if pixels > self.limits.max_pixels:
            raise _bad(413, f"image {name!r} has {image.width}x{image.height} = {pixels} pixels, over "
                            f"the server's limit of {self.limits.max_pixels} (--max_pixels).")
        return image

    def prepare(self, named_images: list[tuple[str, Image.Image]]) -> tuple[list[Image.Image], np.ndarray]:
        """The RGB images, as `--mode predict` reads a file, and the model's uint8 input [n, H, W, 3]."""
        images = []
        for name, image in named_images:
            with _readable(name):
                images.append(load_rgb(image, name))
        return images, np.stack([self.pixels(image) for image in images])

    async def predict(self, named: list[tuple[str, bytes]], top_k: int) -> list[dict]:
        if not named:
            raise _bad(400, "no images: send multipart files in the field 'files', or JSON "
                            '{"images": [<base64>, ...]}.')
        if len(named) > self.limits.max_images:
            raise _too_many_images(len(named), self.limits.max_images)
        opened = [(name, self.open_image(name, data)) for name, data in named]
        total = sum(image.width * image.height for _, image in opened)
        if total > self.limits.max_request_pixels:
            raise _bad(413, f"{len(opened)} images of {total} pixels in all, over the server's limit of "
                            f"{self.limits.max_request_pixels} per request (--max_request_pixels): send fewer "
                            f"or smaller images.")
        with self.in_flight.hold(total):
            # A small request is decoded and answered here: cheaper than the hand-off to a thread.
            small = total <= INLINE_PIXELS
            images, pixels = self.prepare(opened) if small else await run_in_threadpool(self.prepare, opened)
            del opened  # decoded as they were read; `images` holds the RGB ones the records need
            outputs = await self.batcher.submit(pixels)
            outputs = {k: v[:, :top_k] if k in self.info["ranked"] else v for k, v in outputs.items()}
            names = [n for n, _ in named]
            with tempfile.TemporaryDirectory(dir=self.scratch.name) as folder:
                # Files the task writes are named by position, never by the client's file names.
                task_args = (outputs, images, [f"image_{i}" for i in range(len(names))], folder)
                records = (self.task.prediction_records(*task_args) if small else
                           await run_in_threadpool(self.task.prediction_records, *task_args))
                return [{"image": n, **_inline_files(r, folder)} for n, r in zip(names, records)]


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None where the C library is another."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class PixelBudget:
    """The decoded pixels of the requests being answered, at most `limit` at once (beyond it: 503).

    Decoded images are freed when their request ends, but the C allocator keeps freed memory for
    reuse: when the last large request in flight ends, it is handed back to the OS (glibc's
    malloc_trim), so a burst of large images does not leave the server at its peak size."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    @contextlib.contextmanager
    def hold(self, pixels: int):
        if self.used + pixels > self.limit:
            raise HTTPException(503, f"the server is decoding {self.used} pixels for other requests; with "
                                     f"this request's {pixels} that is over its limit of {self.limit} "
                                     f"(--max_pixels_in_flight): try again shortly.", headers={"Retry-After": "1"})
        self.used += pixels
        try:
            yield
        finally:
            self.used -= pixels
            if self.used == 0 and pixels > INLINE_PIXELS and _malloc_trim() is not None:
                _malloc_trim()(0)


def _too_many_images(count: int | str, limit: int) -> HTTPException:
    return _bad(413, f"{count} images in one request, over the server's limit of {limit} (--max_images).")


def _top_k(value, task, most: int) -> int:
    """A request's top_k: None (the task's default, as --mode predict's), or a whole number (JSON's,
    or digits in a query or form field) checked as everywhere (`vitjax.trained.resolve_top_k`)."""
    if isinstance(value, str) and re.fullmatch(r"\s*\+?\d{1,6}\s*", value):
        value = int(value)
    if value is not None and type(value) is not int:  # noqa: E721 - bool is an int subclass, and not a top_k
        raise _bad(422, f"top_k={reprlib.repr(value)} is not an integer: give a whole number from 1 to {most}.")
    try:
        return resolve_top_k(task, value, most)
    except BadValue as error:
        raise _bad(422, str(error)) from None


class Uploads:
    """The request bodies still arriving, each under its deadline (--body_timeout_s). On SIGTERM or
    Ctrl-C `close()` ends them at once (503), so a stalled upload does not hold up the shutdown."""

    def __init__(self):
        self.deadlines: set[asyncio.Timeout] = set()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        for deadline in self.deadlines:
            deadline.reschedule(asyncio.get_running_loop().time())

    def close_on_signals(self) -> None:
        """Calls `close()` on SIGINT and SIGTERM as well as the handlers already there (uvicorn's,
        which stop the server); only where signals can be handled (the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(number)
            if callable(previous):
                def handler(sig, frame, previous=previous):
                    loop.call_soon_threadsafe(self.close)
                    previous(sig, frame)
                signal.signal(number, handler)

    async def read(self, request: Request, limits: Limits) -> bytes:
        limit, timeout = limits.max_request_bytes, limits.body_timeout_s
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _bad(413, f"request of {declared} bytes, over the server's limit of {limit} (--max_request_bytes).")
        body = bytearray()
        try:
            async with asyncio.timeout(0 if self.closed else timeout) as deadline:
                self.deadlines.add(deadline)
                try:
                    async for chunk in request.stream():
                        body += chunk
                        if len(body) > limit:
                            raise _bad(413, f"request over the server's limit of {limit} bytes (--max_request_bytes).")
                finally:
                    self.deadlines.discard(deadline)
        except TimeoutError:
            if self.closed:
                raise HTTPException(503, "the server is shutting down: send the request again.",
                                    headers={"Connection": "close"}) from None
            raise HTTPException(408, f"the request body did not arrive within {timeout:g} s (--body_timeout_s): "
                                     f"{len(body)} bytes came.", headers={"Connection": "close"}) from None
        except ClientDisconnect:
            raise _bad(400, f"the client closed the connection after {len(body)} bytes of the body.") from None
        return bytes(body)


async def _images_from(request: Request, body: bytes, limits: Limits) -> tuple[list, object]:
    """(name, bytes) per image and the requested top_k (unchecked), from a multipart or JSON body."""
    kind = request.headers.get("content-type", "")
    top_k = request.query_params.get("top_k")  # None: the task's default
    if kind.startswith("multipart/form-data"):
        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}
        try:
            form = await Request(request.scope, receive).form(max_files=limits.max_images)
        except FormError as error:  # the form parser's 400s: its file limit is ours, with our answer
            if "Too many files" in str(error.detail):
                raise _too_many_images(f"more than {limits.max_images}", limits.max_images) from None
            raise
        files = form.getlist("files")
        named = [(f.filename or f"image_{i}", await f.read()) for i, f in enumerate(files)
                 if hasattr(f, "read")]
        top_k = form.get("top_k", top_k)
    elif kind.startswith("application/json"):
        try:
            payload = json.loads(body)
            encoded = payload["images"]
            if not isinstance(encoded, list):
                raise TypeError(f'"images" is a {type(encoded).__name__}, not a list')
            named = [(f"image_{i}", base64.b64decode(data, validate=True)) for i, data in enumerate(encoded)]
            top_k = payload.get("top_k", top_k)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError, binascii.Error) as error:
            detail = "nested too deeply" if isinstance(error, RecursionError) else error
            raise _bad(400, f'the JSON body must be {{"images": [<base64 image>, ...], "top_k": k}} '
                            f"({type(error).__name__}: {detail}).") from None
    else:
        raise _bad(415, f"content-type {kind or '(none)'!r}: send multipart/form-data (field 'files') "
                        f"or application/json.")
    return named, top_k


def _authorized(scope, key: bytes) -> bool:
    """Whether the request carries `Authorization: Bearer <key>` (the scheme in any case: RFC 7235)."""
    given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    scheme, _, token = given.strip().partition(b" ")
    return scheme.lower() == b"bearer" and secrets.compare_digest(token.strip(), key)


class _RequireKey:
    """ASGI middleware: with an API key, every path but `open_paths` answers 401 without it (the
    generated /docs and /openapi.json included)."""

    def __init__(self, app, key: str, open_paths: frozenset[str]):
        self.app, self.key, self.open_paths = app, key.encode(), open_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in self.open_paths and not _authorized(scope, self.key):
            response = JSONResponse({"detail": "missing or wrong API key: send 'Authorization: Bearer <key>'."},
                                    401, headers={"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def create_app(backend, limits: Limits = Limits()) -> FastAPI:
    predictor, uploads = Predictor(backend, limits), Uploads()

    @contextlib.asynccontextmanager
    async def lifespan(_):
        await run_in_threadpool(predictor.batcher.warm_up)
        predictor.batcher.start()
        uploads.close_on_signals()
        yield
        await predictor.batcher.stop()
        predictor.scratch.cleanup()

    app = FastAPI(title="vitjax", lifespan=lifespan)
    app.state.predictor = predictor
    if limits.api_key:
        app.add_middleware(_RequireKey, key=limits.api_key, open_paths=frozenset({"/", "/health"}))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/metadata")
    async def metadata():
        return {**predictor.info, "server": {"batch_sizes": predictor.batcher.sizes,
                                             **dataclasses.asdict(limits), "api_key": bool(limits.api_key)}}

    @app.post("/predict")
    async def predict(request: Request):
        body = await uploads.read(request, limits)
        named, top_k = await _images_from(request, body, limits)
        top_k = _top_k(top_k, predictor.task, predictor.info["max_top_k"])
        # A Response as is: FastAPI's encoder would walk the records again to make them JSON-able.
        return JSONResponse({"predictions": await predictor.predict(named, top_k)})

    return app
