"""The dynamic batcher: a lone request runs at once; requests that queue while the model is busy share
the next call; backends that compile per shape get batches padded to the fixed sizes, others the
exact batch; every image gets its own outputs back."""
import asyncio
import threading

import numpy as np

from vitjax.serve.batching import DynamicBatcher


class SlowBackend:
    """Sums each image; the first call waits until the test lets it go, so the others queue behind it."""

    def __init__(self):
        self.batch_sizes, self.release = [], threading.Event()

    def run(self, images):
        self.release.wait(10)
        self.batch_sizes.append(len(images))
        return {"sum": images.reshape(len(images), -1).sum(axis=1)}


async def _serve(fixed_sizes: bool, counts: list[int]):
    backend = SlowBackend()
    batcher = DynamicBatcher(backend.run, (2, 2, 3), max_batch=8, max_wait_ms=0, fixed_sizes=fixed_sizes)
    batcher.start()
    requests = [np.full((n, 2, 2, 3), i + 1, np.uint8) for i, n in enumerate(counts)]
    first = asyncio.ensure_future(batcher.submit(requests[0]))
    await asyncio.sleep(0.05)  # the first request is running, alone
    rest = [asyncio.ensure_future(batcher.submit(r)) for r in requests[1:]]
    await asyncio.sleep(0.05)
    backend.release.set()
    outputs = await asyncio.gather(first, *rest)
    await batcher.stop()
    for i, (out, images) in enumerate(zip(outputs, requests)):
        assert out["sum"].tolist() == [12 * (i + 1)] * len(images)
    return backend.batch_sizes


def test_a_lone_request_runs_at_once_and_queued_ones_share_the_next_call():
    assert asyncio.run(_serve(False, [1, 2, 1, 2])) == [1, 5]  # exact sizes: ONNX Runtime
    assert asyncio.run(_serve(True, [1, 2, 1, 2])) == [1, 8]   # padded to a bucket: jitted JAX


def test_a_batch_never_exceeds_max_batch():
    assert asyncio.run(_serve(False, [1, 5, 4, 3])) == [1, 5, 7]
