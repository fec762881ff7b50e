"""The service's bounds, `Limits`: one field per `vitjax serve` flag of the same name, each checked when
made (a nonsense value is refused at start, naming the flag). Imports nothing heavy, so the command
line is checked before the model and its libraries load."""
from __future__ import annotations

import dataclasses


def _at_least(least, default):
    return dataclasses.field(default=default, metadata={"least": least})


@dataclasses.dataclass(frozen=True)
class Limits:
    """The service's bounds (each is the `vitjax serve` flag of the same name); checked when made."""
    max_request_bytes: int = _at_least(1, 20 << 20)
    body_timeout_s: float = _at_least(0.001, 20.0)  # seconds a request's body may take to arrive
    max_images: int = _at_least(1, 64)              # images per request
    max_pixels: int = _at_least(1, 40_000_000)      # width x height of one image
    max_request_pixels: int = _at_least(1, 80_000_000)     # of all images in one request
    max_pixels_in_flight: int = _at_least(1, 160_000_000)  # of all requests being answered
    max_batch: int = _at_least(1, 32)    # images per model call (the largest batch bucket)
    max_wait_ms: float = _at_least(0.0, 0.0)  # how long a batch waits for more requests (0: batch what queued while busy)
    api_key: str | None = None  # when set, every path but /health and / needs "Authorization: Bearer <api_key>"

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value, least = getattr(self, field.name), field.metadata.get("least")
            if least is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                          and least <= value < float("inf")):
                raise ValueError(f"--{field.name} {value!r}: give a number of at least {least}.")
        if self.max_pixels_in_flight < self.max_request_pixels:
            raise ValueError(f"--max_pixels_in_flight {self.max_pixels_in_flight} is below --max_request_pixels "
                             f"{self.max_request_pixels}: no request that large could ever run.")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key is empty: give a key, or None for no key.")
