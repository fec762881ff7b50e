"""The 15 ImageNet-C common corruptions (Hendrycks & Dietterich, 2019) at severities 1-5.

`corrupt(image, name, severity, seed)` takes a uint8 [H, W, 3] image at the model's input resolution
and returns the corrupted uint8 image of the same shape. Eleven corruptions are the `imagecorruptions`
package's own functions. Four are written here with the package's constants and formulas:
`glass_blur` and `gaussian_blur` (the package passes scikit-image's removed `multichannel`), `fog`
(the package uses NumPy 2's removed `np.float_`) and `impulse_noise` (the package draws from a
generator that cannot be seeded). tests/test_robustness_corruptions.py runs the package's versions
under a compatibility shim and checks that ours give the same pixels.

The package draws from NumPy's global legacy generator, so `corrupt` seeds it per image under a lock:
the same image, corruption, severity and seed give the same pixels in any thread or process, and a
robustness report is reproducible. ImageNet-C's constants assume ~224 px images; at a smaller input
resolution the pixel-scale corruptions (the blurs, frost's texture) weigh more. The package needs
images of at least 32 px.
"""
from __future__ import annotations

import importlib.util
import threading

import numpy as np

from vitjax.errors import BadValue

CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
               "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
               "elastic_transform", "pixelate", "jpeg_compression")
SEVERITIES = (1, 2, 3, 4, 5)
MIN_SIZE = 32  # the package's smallest image side

_GLOBAL_RNG_LOCK = threading.Lock()  # the package's functions share NumPy's global generator


def _gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.filters import gaussian

    return gaussian(image, sigma=sigma, channel_axis=-1)


def gaussian_blur(x: np.ndarray, severity: int, rng: np.random.RandomState) -> np.ndarray:
    """A Gaussian blur of standard deviation 1, 2, 3, 4 or 6 pixels (float [0, 255])."""
    del rng
    sigma = (1, 2, 3, 4, 6)[severity - 1]
    return np.clip(_gaussian(x / 255.0, sigma), 0, 1) * 255


def glass_blur(x: np.ndarray, severity: int, rng: np.random.RandomState) -> np.ndarray:
    """Blur, then, `passes` times from the bottom-right pixel up, each pixel takes the value of a
    random neighbour within `delta` pixels, then blur again."""
    sigma, delta, passes = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))[severity - 1]
    pixels = np.uint8(_gaussian(x / 255.0, sigma) * 255)
    height, width = pixels.shape[:2]
    for _ in range(passes):
        for row in range(height - delta, delta, -1):
            for col in range(width - delta, delta, -1):
                d_col, d_row = rng.randint(-delta, delta, size=(2,))
                # The package writes this as a tuple swap of NumPy views, which copies one way.
                pixels[row, col] = pixels[row + d_row, col + d_col]
    return np.clip(_gaussian(pixels / 255.0, sigma), 0, 1) * 255


def _plasma_fractal(size: int, decay: float, rng: np.random.RandomState) -> np.ndarray:
    """A [size, size] diamond-square height map in [0, 1]; `size` a power of two. Each level adds
    noise of amplitude `wibble` squared to the mean of its four neighbours, `wibble` /= `decay`."""
    height = np.zeros((size, size), np.float64)
    wibble = 100.0

    def noisy_mean(total):
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    step = size
    while step >= 2:
        half = step // 2
        corners = height[0:size:step, 0:size:step]
        around = corners + np.roll(corners, -1, axis=0)
        around += np.roll(around, -1, axis=1)
        height[half:size:step, half:size:step] = noisy_mean(around)
        centres = height[half:size:step, half:size:step]
        corners = height[0:size:step, 0:size:step]
        across = ((centres + np.roll(centres, 1, axis=0)) + (corners + np.roll(corners, -1, axis=1)))
        height[0:size:step, half:size:step] = noisy_mean(across)
        down = ((centres + np.roll(centres, 1, axis=1)) + (corners + np.roll(corners, -1, axis=0)))
        height[half:size:step, 0:size:step] = noisy_mean(down)
        step = half
        wibble /= decay
    height -= height.min()
    return height / height.max()


def fog(x: np.ndarray, severity: int, rng: np.random.RandomState) -> np.ndarray:
    """A plasma-fractal haze of strength `amount` added, then the range squeezed back."""
    amount, decay = ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))[severity - 1]
    size = 1 << (int(max(x.shape)) - 1).bit_length()
    x = x / 255.0
    peak = x.max()
    x = x + amount * _plasma_fractal(size, decay, rng)[:x.shape[0], :x.shape[1], None]
    return np.clip(x * peak / (peak + amount), 0, 1) * 255


def impulse_noise(x: np.ndarray, severity: int, rng: np.random.RandomState) -> np.ndarray:
    """Salt-and-pepper noise on 3, 6, 9, 17 or 27 % of the values (scikit-image's `random_noise`)."""
    from skimage.util import random_noise

    amount = (0.03, 0.06, 0.09, 0.17, 0.27)[severity - 1]
    seeded = np.random.default_rng(rng.randint(2**31))
    return np.clip(random_noise(x / 255.0, mode="s&p", amount=amount, rng=seeded), 0, 1) * 255


OWN = {"gaussian_blur": gaussian_blur, "glass_blur": glass_blur, "fog": fog,
       "impulse_noise": impulse_noise}


def check(names, severities, input_size) -> None:
    """Raises ValueError naming the fix for an unknown corruption, severity or a too small input."""
    unknown = [name for name in names if name not in CORRUPTIONS]
    if unknown:
        raise BadValue(f"unknown corruption(s) {unknown} in --robustness.corruptions; choose from "
                       f"{list(CORRUPTIONS)}.")
    bad = [s for s in severities if s not in SEVERITIES]
    if bad:
        raise BadValue(f"--robustness.severities {bad} are not ImageNet-C severities {SEVERITIES}.")
    if names and importlib.util.find_spec("imagecorruptions") is None:
        raise BadValue("the corruption sweep needs the imagecorruptions package: pip install -e "
                       "'.[robustness]' (or set --robustness.corruptions='()' to skip it).")
    if names and min(input_size) < MIN_SIZE:
        raise BadValue(f"the ImageNet-C corruptions need images of at least {MIN_SIZE} px; the model's "
                       f"input is {tuple(input_size)}. Set --robustness.corruptions='()' to skip them.")


def corrupt(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """`image` (uint8 [H, W, 3]) under corruption `name` at `severity` (1-5), seeded by `seed`."""
    if name in OWN:
        out = OWN[name](np.asarray(image), severity, np.random.RandomState(seed))
    else:
        from imagecorruptions import corrupt as package_corrupt

        with _GLOBAL_RNG_LOCK:
            np.random.seed(seed)
            out = package_corrupt(np.asarray(image), severity=severity, corruption_name=name)
    return np.uint8(out)  # truncation, as the package's `corrupt`
