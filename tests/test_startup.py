"""What a run imports and reads on its way to the first step: nothing it does not need there."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from sklearn.datasets import load_digits

from vitjax.data.sources import demo_digits


def test_the_trainer_imports_no_plotting_sklearn_or_torch():
    """matplotlib (plots at the end of a run), scikit-learn (average precision of multi-label
    reports) and torch (tensorboardX imports it when installed) cost seconds at start-up."""
    code = ("import sys; import vitjax.modes, vitjax.train.loop, vitjax.main; "
            "from vitjax import registry; registry.load_plugins(()); registry.get_task('classification'); "
            "from vitjax.train.writer import MetricWriter; import tempfile; "
            "MetricWriter(tempfile.mkdtemp()).close(); "
            "print(sorted(m for m in ('matplotlib', 'sklearn', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_demo_digits_are_scikit_learns_digits():
    splits, classes = demo_digits()
    train = splits["train"]
    digits = load_digits()
    assert classes == [str(d) for d in range(10)] and len(train) == len(digits.target) == 1797
    np.testing.assert_array_equal(train.labels(), digits.target)
    for i in (0, 1000, 1796):
        image = np.asarray(train[i]["image"])
        assert image.shape == (8, 8, 3)
        np.testing.assert_array_equal(image[..., 0], np.round(digits.images[i] * 255 / 16).astype(np.uint8))
