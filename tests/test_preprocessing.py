"""Preprocessing == transformers' image processors (PIL backend) on random images of odd sizes and modes."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
import transformers
from PIL import Image

from vitjax.checkpoints.preprocessing import Preprocessing

PROCESSORS = {
    "vit": lambda: transformers.ViTImageProcessorPil(size={"height": 30, "width": 46}),
    "deit": lambda: transformers.DeiTImageProcessorPil(size={"height": 40, "width": 40},
                                                       crop_size={"height": 32, "width": 32}),
    "dinov2_bit": lambda: transformers.BitImageProcessorPil(size={"shortest_edge": 37},
                                                            crop_size={"height": 33, "width": 35}),
    "siglip": lambda: transformers.SiglipImageProcessorPil(size={"height": 36, "width": 28}),
    "clip": lambda: transformers.CLIPImageProcessorPil(size={"shortest_edge": 37},
                                                       crop_size={"height": 32, "width": 30}),
}


def _images():
    rng = np.random.default_rng(0)
    rgb = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(17, 53), (61, 29), (10, 12)]]
    rgba = Image.fromarray(rng.integers(0, 256, (21, 33, 4), dtype=np.uint8), "RGBA")
    i16 = Image.fromarray(rng.integers(0, 65535, (19, 23), dtype=np.uint16)).convert("I;16")
    return rgb + [rgba, rgba.convert("P"), rgb[0].convert("L"), rgb[1].convert("CMYK"), i16]


@pytest.mark.parametrize("name", sorted(PROCESSORS))
def test_matches_transformers_processor(name):
    hf = PROCESSORS[name]()
    ours = Preprocessing.from_hf(hf.to_dict())
    for image in _images():
        reference = image
        if image.mode == "I;16":
            # transformers (PIL's convert) clips 16-bit pixels to 255, a white image; vitjax scales them
            # to 8 bits (vitjax.images.to_rgb), so the reference is transformers on the scaled image.
            white = hf(Image.new("RGB", image.size, (255, 255, 255)), return_tensors="np")["pixel_values"]
            clipped = hf(image, return_tensors="np", do_convert_rgb=True)["pixel_values"]
            assert np.isclose(clipped, white).mean() > 0.95
            reference = Image.fromarray(np.round(np.asarray(image, np.float64) / 257).astype(np.uint8))
        expected = hf(reference, return_tensors="np", do_convert_rgb=True)["pixel_values"]
        np.testing.assert_allclose(ours(image), expected, atol=1e-5, err_msg=f"{name} {image.mode} {image.size}")
    assert ours.input_size == expected.shape[-2:]


@pytest.mark.parametrize("name", sorted(PROCESSORS))
def test_to_hf_reloads_in_transformers(name, tmp_path):
    ours = Preprocessing.from_hf(PROCESSORS[name]().to_dict())
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(ours.to_hf()))
    hf = transformers.AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
    image = _images()[0]
    np.testing.assert_allclose(ours(image), hf(image, return_tensors="np")["pixel_values"], atol=1e-5)
    assert Preprocessing.from_hf(ours.to_hf()) == ours


def test_legacy_feature_extractor_configs():
    vit = Preprocessing.from_hf({"feature_extractor_type": "ViTFeatureExtractor", "size": 224, "resample": 2,
                                 "image_mean": [0.5] * 3, "image_std": [0.5] * 3})
    assert vit.input_size == (224, 224) and vit.crop is None
    deit = Preprocessing.from_hf({"feature_extractor_type": "DeiTFeatureExtractor", "size": 256, "crop_size": 224,
                                  "do_center_crop": True, "resample": 3})
    assert deit.size == (256, 256) and deit.input_size == (224, 224)
    bit = Preprocessing.from_hf({"image_processor_type": "BitImageProcessor", "size": 256, "crop_size": 224,
                                 "do_center_crop": True})
    assert bit.shortest_edge == 256 and bit.input_size == (224, 224)


def test_device_normalize_matches_host():
    prep = Preprocessing.from_hf(PROCESSORS["deit"]().to_dict())
    batch = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(np.asarray(prep.normalize(jnp.asarray(batch))), prep.normalize(batch), atol=1e-6)


def test_exif_orientation_applied():
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (10, 20, 3), dtype=np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    image.info["exif"] = exif.tobytes()
    image = Image.open(_roundtrip_jpeg(image, exif))
    prep = Preprocessing(size=None, shortest_edge=10, crop=(20, 10), do_normalize=False, do_rescale=False)
    assert prep.to_uint8(image).shape == (20, 10, 3)


def _roundtrip_jpeg(image, exif):
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    buffer.seek(0)
    return buffer


def test_with_input_size():
    deit = Preprocessing(size=(256, 256), crop=(224, 224), resample=3)
    assert deit.with_input_size((384, 384)).input_size == (384, 384)
    assert deit.with_input_size((384, 384)).size == (439, 439)
    assert Preprocessing.default(224).with_input_size((96, 128)).input_size == (96, 128)
