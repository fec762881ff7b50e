"""Durations: every unit converts to steps, bare numbers follow the caller's unit, bad input explains itself."""
import pytest

from vitjax import durations

KW = dict(steps_per_epoch=50, total_steps=1000, batch_size=32)


@pytest.mark.parametrize("value, steps", [
    (500, 500), (12.4, 12), ("500", 500), ("500 steps", 500), ("1 step", 1), ("3 epochs", 150),
    ("1.5 epoch", 75), ("20000 examples", 625), ("320 images", 10), ("64 samples", 2), ("10%", 100),
    ("2.5 %", 25), ("0", 0), (" 7  STEPS ", 7), ("1e2 steps", 100), ("0.05 epochs", 3), (2.5, 3),
])
def test_to_steps(value, steps):
    assert durations.to_steps(value, **KW) == steps


def test_bare_numbers_can_mean_epochs():
    assert durations.to_steps(2, bare="epochs", **KW) == 100
    assert durations.to_steps("2", bare="epochs", **KW) == 100
    assert durations.to_steps("2 steps", bare="epochs", **KW) == 2


def test_parse_reports_unit():
    assert durations.parse("3 epochs") == (3.0, "epochs")
    assert durations.parse("10%") == (10.0, "percent")
    assert durations.parse(4, bare="epochs") == (4.0, "epochs")


def test_only_the_needed_quantity_is_required():
    assert durations.to_steps("3 epochs", steps_per_epoch=10) == 30
    with pytest.raises(ValueError, match="warmup='3 epochs'.*steps_per_epoch"):
        durations.to_steps("3 epochs", total_steps=100, name="warmup")
    with pytest.raises(ValueError, match="batch_size"):
        durations.to_steps("100 examples", steps_per_epoch=10)
    with pytest.raises(ValueError, match="total_steps"):
        durations.to_steps("10%", batch_size=8)


@pytest.mark.parametrize("value, message", [
    ("3 weeks", "unknown unit 'weeks'"), ("steps", "not a duration"), ("-3 steps", "not a duration"),
    (-1, "non-negative"), (float("nan"), "non-negative"), ("150%", "at most 100%"), (True, "not a duration"),
    (None, "not a duration"), ("3 epochs 2", "not a duration"),
])
def test_bad_durations(value, message):
    with pytest.raises(ValueError, match=message) as info:
        durations.to_steps(value, name="optim.warmup", **KW)
    assert "optim.warmup" in str(info.value)


def test_bad_bare_unit():
    with pytest.raises(ValueError, match="bare"):
        durations.to_steps(3, bare="examples", **KW)
