"""Transforms: decoding every input kind and PIL mode to RGB, EXIF orientation, training augmentation."""
import io

import numpy as np
import pytest
from PIL import Image

from test_data_fakes import data_config, write_image
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.data import policies, transforms
from vitjax.images import to_rgb


def _image(mode: str) -> Image.Image:
    rng = np.random.default_rng(0)
    if mode in ("I;16", "I"):
        return Image.fromarray(rng.integers(0, 65536, (6, 7)).astype(np.uint16 if mode == "I;16" else np.int32),
                               mode=None if mode == "I;16" else "I")
    if mode == "F":
        return Image.fromarray(rng.random((6, 7)).astype(np.float32), mode="F")
    return Image.new("RGBA", (7, 6), (200, 30, 40, 128)).convert(mode) if mode != "P+t" else _palette_t()


def _palette_t() -> Image.Image:
    img = Image.new("P", (7, 6), 0)
    img.putpalette([255, 0, 0] + [0, 255, 0] * 255)
    img.info["transparency"] = 0
    return img


@pytest.mark.parametrize("mode", ["L", "LA", "P", "P+t", "RGBA", "CMYK", "I;16", "I", "F", "1", "YCbCr"])
def test_every_mode_becomes_rgb(mode):
    img = to_rgb(_image(mode))
    assert img.mode == "RGB" and img.size == (7, 6)


def test_alpha_on_white_and_16_bit_scaling():
    transparent = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    assert np.asarray(to_rgb(transparent)).min() == 255
    deep = Image.fromarray(np.full((2, 2), 65535, np.uint16))
    assert np.asarray(to_rgb(deep)).min() == 255


def test_16_bit_pixels_scale_the_same_in_training_and_prediction():
    """A 16-bit PNG pixel of 40000 is 40000/65535 of full scale: 156 of 255, where PIL's own
    convert("RGB") clips it to 255. Training decodes through `load_rgb`, evaluation and prediction
    through `Preprocessing.to_uint8`; both must agree."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), 40000, np.uint16)).save(buffer, format="PNG")
    assert np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")).max() == 255  # PIL clips
    expected = round(40000 / 65535 * 255)
    trained = np.asarray(transforms.load_rgb(buffer.getvalue(), "deep.png"))
    predicted = Preprocessing(size=(4, 4)).to_uint8(Image.open(io.BytesIO(buffer.getvalue())))
    assert expected == 156
    np.testing.assert_array_equal(trained, np.full((4, 4, 3), expected, np.uint8))
    np.testing.assert_array_equal(predicted, trained)


def test_load_rgb_inputs_and_exif_orientation(tmp_path):
    path = write_image(str(tmp_path / "a.png"), 0, size=(4, 9))
    data = open(path, "rb").read()
    for image in (path, data, {"bytes": data, "path": None}, {"bytes": None, "path": path},
                  Image.open(path), np.asarray(Image.open(path))):
        img = transforms.load_rgb(image, "a.png")
        assert img.mode == "RGB" and img.size == (9, 4)
    grey = transforms.load_rgb(np.zeros((4, 9, 1), np.uint8), "grey")
    assert grey.mode == "RGB"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees.
    buf = io.BytesIO()
    Image.new("RGB", (9, 4)).save(buf, "JPEG", exif=exif)
    assert transforms.load_rgb(buf.getvalue(), "rotated.jpg").size == (4, 9)
    with pytest.raises(ValueError, match="Cannot decode image empty-bytes"):
        transforms.load_rgb(b"", "empty-bytes")


def _augment(seed: int, **overrides) -> np.ndarray:
    aug = data_config(**{f"augment__{k}": v for k, v in overrides.items()}).augment
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    return transforms.augment(img, np.random.default_rng(seed), aug, (16, 12), Image.Resampling.BILINEAR)


@pytest.mark.parametrize("policy", ["none", "randaugment", "trivialaugment"])
def test_augment_shape_dtype_determinism_and_variety(policy):
    settings = dict(policy=policy, color_jitter=0.4, random_erasing=0.5)
    outs = [_augment(seed, **settings) for seed in range(4)]
    assert all(o.shape == (16, 12, 3) and o.dtype == np.uint8 for o in outs)
    assert np.array_equal(outs[0], _augment(0, **settings))
    assert len({o.tobytes() for o in outs}) == 4
    with pytest.raises(ValueError, match="augment.policy='autoaugment'"):
        _augment(0, policy="autoaugment")


def test_every_policy_op_keeps_size_and_mode():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8))
    for ops in (policies.RAND_OPS, policies.TRIVIAL_OPS):
        for name, op in ops.items():
            for fraction in (0.0, 1.0):
                out = op(img, fraction, -1.0)
                assert out.size == img.size and out.mode == "RGB", name


def test_crop_box_within_bounds_and_fallback():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = transforms.crop_box(30, 50, rng, (0.08, 1.0), (0.75, 1.333))
        assert 0 <= top and top + h <= 30 and 0 <= left and left + w <= 50 and h > 0 and w > 0
    assert transforms.crop_box(10, 100, rng, (1.0, 1.0), (1.0, 1.0)) == (0, 45, 10, 10)


def test_jpeg_draft_decoding_keeps_at_least_the_requested_size():
    rng = np.random.default_rng(0)
    big = np.kron(rng.integers(0, 256, (25, 40, 3)), np.ones((40, 40, 1))).astype(np.uint8)  # 1000x1600
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, "JPEG", quality=95)
    full = transforms.load_rgb(buf.getvalue(), "big.jpg")
    small = transforms.load_rgb(buf.getvalue(), "big.jpg", draft_size=200)
    assert full.size == (1600, 1000) and small.size == (400, 250)
    a = transforms.squash(full, (100, 100), Image.Resampling.BILINEAR).astype(int)
    b = transforms.squash(small, (100, 100), Image.Resampling.BILINEAR).astype(int)
    assert np.abs(a - b).mean() < 8
