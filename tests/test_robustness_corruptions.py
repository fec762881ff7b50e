"""The ImageNet-C corruptions: ours equal the `imagecorruptions` package's formulas pixel for pixel
(its failing functions run under a compatibility shim), and every corruption works at 32 px."""
import functools

import numpy as np
import pytest
import skimage.filters
import skimage.util
from PIL import Image
from sklearn.datasets import load_digits

imagecorruptions = pytest.importorskip("imagecorruptions")
from imagecorruptions import corruptions as package  # noqa: E402

from vitjax.robustness import corruptions  # noqa: E402


def _images():
    """A real scan (a digit upscaled to 32 px, grey) and a colour photo-like gradient, 32 x 40."""
    digit = (load_digits().images[7] * 255 / 16).astype(np.uint8)
    grey = np.asarray(Image.fromarray(digit).resize((32, 32), Image.BILINEAR))
    yy, xx = np.mgrid[0:32, 0:40]
    colour = np.stack([xx * 6, yy * 7, (xx + yy) * 3], axis=-1).clip(0, 255).astype(np.uint8)
    return [np.repeat(grey[..., None], 3, axis=-1), colour]


@pytest.fixture
def package_shim(monkeypatch):
    """The package's own functions made to run on NumPy 2 / current scikit-image, unchanged else."""
    original = skimage.filters.gaussian

    def gaussian(image, sigma, multichannel=False, **kwargs):
        return original(image, sigma=sigma, channel_axis=-1 if multichannel else None, **kwargs)

    monkeypatch.setattr(package, "gaussian", gaussian)
    monkeypatch.setattr(np, "float_", np.float64, raising=False)
    return monkeypatch


@pytest.mark.parametrize("name", sorted(corruptions.OWN))
@pytest.mark.parametrize("severity", corruptions.SEVERITIES)
def test_own_corruptions_equal_the_package_formulas(package_shim, name, severity):
    for i, image in enumerate(_images()):
        seed = 1000 * severity + i
        if name == "impulse_noise":  # the package's generator, seeded as ours derives it
            derived = np.random.RandomState(seed).randint(2**31)
            package_shim.setattr(skimage.util, "random_noise", functools.partial(
                skimage.util.random_noise, rng=np.random.default_rng(derived)))
        np.random.seed(seed)
        expected = imagecorruptions.corrupt(image, severity=severity, corruption_name=name)
        ours = corruptions.corrupt(image, name, severity, seed)
        assert ours.dtype == np.uint8 and ours.shape == image.shape
        np.testing.assert_array_equal(ours, expected)
        assert not np.array_equal(ours, image)  # it does corrupt


def test_every_corruption_works_at_32_px_and_is_seeded():
    image = _images()[1]
    for name in corruptions.CORRUPTIONS:
        for severity in corruptions.SEVERITIES:
            out = corruptions.corrupt(image, name, severity, seed=7)
            assert out.shape == image.shape and out.dtype == np.uint8, (name, severity)
            np.testing.assert_array_equal(out, corruptions.corrupt(image, name, severity, seed=7))
        assert not np.array_equal(corruptions.corrupt(image, name, 5, seed=7), image), name
    noisy = [corruptions.corrupt(image, "gaussian_noise", 3, seed=s) for s in (1, 2)]
    assert not np.array_equal(*noisy)


def test_the_package_functions_we_replace_still_fail_without_the_shim():
    """If this starts failing, the package works again and the own versions can go."""
    image = _images()[0]
    for name in sorted(set(corruptions.OWN) - {"impulse_noise"}):
        with pytest.raises((TypeError, AttributeError)):
            imagecorruptions.corrupt(image, severity=1, corruption_name=name)


def test_check_names_the_fix():
    with pytest.raises(ValueError, match="choose from"):
        corruptions.check(["gausian_noise"], [1], (32, 32))
    with pytest.raises(ValueError, match="severities"):
        corruptions.check(["fog"], [6], (32, 32))
    with pytest.raises(ValueError, match="at least 32 px"):
        corruptions.check(["fog"], [1], (16, 16))
    corruptions.check([], [1], (16, 16))
