"""Durations in any unit, converted to train steps in one place.

A duration is written the way the user thinks about it and converted here, and only here:

    500            plain int: steps (or epochs where the caller says bare numbers are epochs)
    2.5            plain float: same unit as a plain int, rounded to the nearest step
    "500"          a bare number as a string (what a command-line override gives): same as 500
    "500 steps"    steps ("step" also accepted)
    "3 epochs"     epochs ("epoch"), times `steps_per_epoch`
    "20000 examples"  examples ("example", "samples", "images"), divided by the global batch size
    "10%"          a percentage of the whole run (`total_steps`)

Results are whole steps, rounded to the nearest step (halves up). A "step" is one call of the train step (one
global batch of `batch_size` examples).
"""
from __future__ import annotations

import math
import re

from vitjax.errors import BadValue





UNITS = {
    "step": "steps", "steps": "steps",
    "epoch": "epochs", "epochs": "epochs",
    "example": "examples", "examples": "examples", "sample": "examples", "samples": "examples",
    "image": "examples", "images": "examples",
    "%": "percent",
}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z%]*)\s*$")
_FORMS = "an int, a float, or a string like '500 steps', '3 epochs', '20000 examples', '10%'"


def parse(value: int | float | str, *, bare: str = "steps", name: str = "duration") -> tuple[float, str]:
    """Split a duration into (amount, unit) with unit in {"steps", "epochs", "examples", "percent"}.

    `bare` is the unit of a number written without one ("steps" or "epochs"); `name` is the config
    key the value came from, used in error messages.
    """
    if bare not in ("steps", "epochs"):
        raise ValueError(f"durations.parse(bare={bare!r}): bare numbers can mean 'steps' or 'epochs'")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadValue(f"{name}={value!r} is not a duration; write {_FORMS}")
    if isinstance(value, (int, float)):
        amount, unit = float(value), bare
    else:
        match = _PATTERN.match(value)
        if match is None:
            raise BadValue(f"{name}={value!r} is not a duration; write {_FORMS}")
        amount, word = float(match.group(1)), match.group(2).lower()
        if word and word not in UNITS:
            raise BadValue(f"{name}={value!r}: unknown unit {word!r}; use one of steps, epochs, examples "
                           f"or a percentage like '10%'")
        unit = UNITS[word] if word else bare
    if not math.isfinite(amount) or amount < 0:
        raise BadValue(f"{name}={value!r}: a duration must be a non-negative number")
    if unit == "percent" and amount > 100:
        raise BadValue(f"{name}={value!r}: a percentage of training must be at most 100%")
    return amount, unit


def to_steps(value: int | float | str, *, steps_per_epoch: int | None = None, total_steps: int | None = None,
             batch_size: int | None = None, bare: str = "steps", name: str = "duration") -> int:
    """Convert a duration (see the module docstring) to a whole number of train steps.

    Only the quantity the unit needs must be given: `steps_per_epoch` for epochs, `batch_size`
    (global examples per step) for examples, `total_steps` (the whole run) for percentages.
    """
    amount, unit = parse(value, bare=bare, name=name)
    if unit == "steps":
        steps = amount
    elif unit == "epochs":
        steps = amount * _needed(steps_per_epoch, "steps_per_epoch", name, value)
    elif unit == "examples":
        steps = amount / _needed(batch_size, "batch_size", name, value)
    else:
        steps = amount / 100 * _needed(total_steps, "total_steps", name, value)
    return math.floor(steps + 0.5)


def _needed(quantity: int | None, what: str, name: str, value) -> int:
    """Return `quantity`, or explain that converting `name=value` needs it."""
    if quantity is None or quantity <= 0:
        raise BadValue(f"{name}={value!r}: converting this duration to steps needs a positive {what} "
                       f"(got {quantity!r})")
    return quantity
