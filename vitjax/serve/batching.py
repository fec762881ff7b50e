"""Dynamic batching: concurrent requests' images grouped into one model call.

Requests queue their images; a single worker runs the backend in one thread. While a batch runs,
new requests queue up, and the next batch takes everything queued (up to `max_batch` images): under
load batches fill by themselves, and a lone request runs at once instead of waiting for company.
`max_wait_ms` > 0 additionally holds a batch that long for more requests (worth it only where a
bigger batch costs much less per image). A backend that compiles per shape (the jitted JAX ones)
has `fixed_sizes`: its batches are padded with zero images to the smallest bucket that holds them
(1, 2, 4, ... max_batch), and every bucket runs once at start-up (`warm_up`), so nothing compiles
while serving; other backends (ONNX Runtime) run the exact batch, and warm up on each bucket too.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Callable

import numpy as np


def buckets(max_batch: int) -> list[int]:
    """The batch sizes models run at: powers of two below `max_batch`, and `max_batch`."""
    sizes = [1 << i for i in range(max_batch.bit_length()) if 1 << i < max_batch]
    return [*sizes, max_batch]


class DynamicBatcher:
    def __init__(self, run: Callable[[np.ndarray], dict], input_shape, max_batch: int, max_wait_ms: float,
                 fixed_sizes: bool):
        self.run, self.input_shape = run, tuple(input_shape)
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self.sizes = buckets(max_batch)
        self.fixed_sizes = fixed_sizes
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vitjax-model")
        self.queue: asyncio.Queue | None = None
        self.worker: asyncio.Task | None = None

    def warm_up(self) -> None:
        for size in self.sizes:
            self.run(np.zeros((size, *self.input_shape), np.uint8))

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.worker = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        self.worker.cancel()
        await asyncio.gather(self.worker, return_exceptions=True)
        self.executor.shutdown()

    async def submit(self, images: np.ndarray) -> dict:
        """uint8 [n, H, W, 3] -> the backend's outputs for these n images (any n)."""
        loop = asyncio.get_running_loop()
        futures = []
        for start in range(0, len(images), self.max_batch):
            future = loop.create_future()
            self.queue.put_nowait((images[start:start + self.max_batch], future))
            futures.append(future)
        parts = await asyncio.gather(*futures)
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    async def _work(self) -> None:
        pending = None
        while True:
            group = [pending or await self.queue.get()]
            count, pending = len(group[0][0]), None
            deadline = asyncio.get_running_loop().time() + self.max_wait
            while count < self.max_batch:
                item = self._next_queued() or await self._wait_for_more(deadline)
                if item is None:
                    break
                if count + len(item[0]) > self.max_batch:
                    pending = item
                    break
                group.append(item)
                count += len(item[0])
            await self._run(group, count)

    def _next_queued(self):
        return None if self.queue.empty() else self.queue.get_nowait()

    async def _wait_for_more(self, deadline: float):
        """The next request arriving before `deadline`, or None (at once when there is no max wait)."""
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            return None
        try:
            return await asyncio.wait_for(self.queue.get(), left)
        except asyncio.TimeoutError:
            return None

    async def _run(self, group: list, count: int) -> None:
        images = [images for images, _ in group]
        if self.fixed_sizes:
            size = next(s for s in self.sizes if s >= count)
            batch = np.zeros((size, *self.input_shape), np.uint8)
            batch[:count] = np.concatenate(images)
        else:
            batch = images[0] if len(images) == 1 else np.concatenate(images)
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self.executor, self.run, batch)
        except Exception as error:  # noqa: BLE001 - handed to the requests waiting on this batch
            for _, future in group:
                if not future.done():
                    future.set_exception(error)
            return
        start = 0
        for images, future in group:
            if not future.done():
                future.set_result({k: v[start:start + len(images)] for k, v in outputs.items()})
            start += len(images)
