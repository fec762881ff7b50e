"""The FastAPI application: `POST /predict`, `GET /health`, `GET /metadata`.

`/predict` takes images as multipart files (field `files`, `?top_k=`) or JSON
`{"images": [base64, ...], "top_k": k}` and answers `{"predictions": [record, ...]}`, one record per
image: {"image": its file name (or "image_<i>")} and the task plugin's own record
(`Task.prediction_records`, as `--mode predict` writes it; files a plugin writes, such as segmentation
masks and drawings, come back inline as base64 PNG). Images are read and prepared as `--mode predict`
prepares them (`vitjax.trained.model_input`). Bad input is a 4xx naming the problem, and the
server stays up. Request bytes, images per request and pixels per image are bounded by `Limits`;
with an API key, `/predict` needs `Authorization: Bearer <key>`.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import io
import json
import os
import secrets
import tempfile

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from PIL import Image, UnidentifiedImageError

from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.data.transforms import load_rgb
from vitjax.errors import BadValue
from vitjax.trained import make_task, model_input, resolve_top_k, unique_stems
from vitjax.serve.batching import DynamicBatcher


@dataclasses.dataclass(frozen=True)
class Limits:
    max_request_bytes: int = 20 << 20
    max_images: int = 64        # images per request
    max_pixels: int = 40_000_000  # width x height of one image
    max_batch: int = 32         # images per model call (the largest batch bucket)
    max_wait_ms: float = 0.0    # how long a batch waits for more requests (0: batch what queued while busy)
    api_key: str | None = None  # when set, /predict needs "Authorization: Bearer <api_key>"


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

    async def predict(self, named: list[tuple[str, bytes]], top_k: int | None) -> list[dict]:
        if not named:
            raise _bad(400, "no images: send multipart files in the field 'files', or JSON "
                            '{"images": [<base64>, ...]}.')
        if len(named) > self.limits.max_images:
            raise _bad(413, f"{len(named)} images in one request, over the server's limit of "
                            f"{self.limits.max_images} (--max_images).")
        try:  # None: the task's default, as --mode predict's
            top_k = resolve_top_k(self.task, top_k, self.info["max_top_k"])
        except BadValue as error:
            raise _bad(422, str(error)) from None
        opened = [(name, self.open_image(name, data)) for name, data in named]
        # A small request is decoded and answered here: cheaper than the hand-off to a thread.
        small = sum(image.width * image.height for _, image in opened) <= INLINE_PIXELS
        images, pixels = self.prepare(opened) if small else await run_in_threadpool(self.prepare, opened)
        outputs = await self.batcher.submit(pixels)
        outputs = {k: v[:, :top_k] if k in self.info["ranked"] else v for k, v in outputs.items()}
        names = [n for n, _ in named]
        with tempfile.TemporaryDirectory(dir=self.scratch.name) as folder:
            task_args = (outputs, images, unique_stems(names), folder)
            records = (self.task.prediction_records(*task_args) if small else
                       await run_in_threadpool(self.task.prediction_records, *task_args))
            return [{"image": n, **_inline_files(r, folder)} for n, r in zip(names, records)]


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _bad(413, f"request of {declared} bytes, over the server's limit of {limit} (--max_request_bytes).")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _bad(413, f"request over the server's limit of {limit} bytes (--max_request_bytes).")
    return bytes(body)


async def _images_from(request: Request, body: bytes, limits: Limits) -> tuple[list, int | None]:
    """(name, bytes) per image and top_k (None when not given), from a multipart or JSON request body."""
    kind = request.headers.get("content-type", "")
    top_k = request.query_params.get("top_k")  # None: the task's default
    if kind.startswith("multipart/form-data"):
        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}
        form = await Request(request.scope, receive).form(max_files=limits.max_images + 1)
        files = form.getlist("files")
        named = [(f.filename or f"image_{i}", await f.read()) for i, f in enumerate(files)
                 if hasattr(f, "read")]
        top_k = form.get("top_k", top_k)
    elif kind.startswith("application/json"):
        try:
            payload = json.loads(body)
            encoded = payload["images"]
            named = [(f"image_{i}", base64.b64decode(data, validate=True)) for i, data in enumerate(encoded)]
            top_k = payload.get("top_k", top_k)
        except (ValueError, KeyError, TypeError, binascii.Error) as error:
            raise _bad(400, f'the JSON body must be {{"images": [<base64 image>, ...], "top_k": k}} '
                            f"({type(error).__name__}: {error}).") from None
    else:
        raise _bad(415, f"content-type {kind or '(none)'!r}: send multipart/form-data (field 'files') "
                        f"or application/json.")
    try:
        return named, None if top_k is None else int(top_k)
    except (TypeError, ValueError):
        raise _bad(422, f"top_k={top_k!r} is not an integer.") from None


def create_app(backend, limits: Limits = Limits()) -> FastAPI:
    predictor = Predictor(backend, limits)

    @contextlib.asynccontextmanager
    async def lifespan(_):
        await run_in_threadpool(predictor.batcher.warm_up)
        predictor.batcher.start()
        yield
        await predictor.batcher.stop()
        predictor.scratch.cleanup()

    app = FastAPI(title="vitjax", lifespan=lifespan)
    app.state.predictor = predictor

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/metadata")
    async def metadata():
        return {**predictor.info, "server": {"batch_sizes": predictor.batcher.sizes,
                                             **dataclasses.asdict(limits), "api_key": bool(limits.api_key)}}

    @app.post("/predict")
    async def predict(request: Request):
        if limits.api_key:
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {limits.api_key}".encode()):
                raise HTTPException(401, "missing or wrong API key: send 'Authorization: Bearer <key>'.",
                                    headers={"WWW-Authenticate": "Bearer"})
        body = await _read_body(request, limits.max_request_bytes)
        named, top_k = await _images_from(request, body, limits)
        # A Response as is: FastAPI's encoder would walk the records again to make them JSON-able.
        return JSONResponse({"predictions": await predictor.predict(named, top_k)})

    return app
