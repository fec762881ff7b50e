"""`Preprocessing`: the checkpoint's `preprocessor_config.json` as the one object through which images
enter the model (training, evaluation and prediction alike).

It reproduces transformers' PIL-backend image processors (ViTImageProcessor: resize to height x width;
DeiTImageProcessor: resize to height x width then center crop; BitImageProcessor, used by DINOv2: resize
the shortest edge then center crop), step for step: RGB conversion (alpha composited on white, as
`convert_to_rgb`), PIL resize with the configured resample filter, center crop, rescale in float64 then
float32, normalize in float32. With torchvision installed, transformers' *default* backend resizes with
torch instead of PIL and can differ from both by a few grey levels; vitjax always follows PIL.
We also apply the EXIF orientation (transformers does so only for images it opens from paths/URLs).

Host side: `to_uint8` (decode -> uint8 HWC). Device side: `normalize` (uint8 -> float32), so the input
pipeline moves uint8 only.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import numpy as np
from PIL import Image, ImageOps

from vitjax.errors import BadValue
from vitjax.images import to_rgb

IMAGENET_STANDARD_MEAN = (0.5, 0.5, 0.5)
IMAGENET_STANDARD_STD = (0.5, 0.5, 0.5)
# Processors whose int `size` means the shortest edge (transformers' default_to_square=False).
_SHORTEST_EDGE_PROCESSORS = ("BitImageProcessor", "CLIPImageProcessor", "ConvNextImageProcessor")


def _hw(value: Any, key: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, dict) and "height" in value and "width" in value:
        return int(value["height"]), int(value["width"])
    raise BadValue(f"preprocessor_config.json: {key}={value!r} is not supported; expected an int or "
                   "{'height': H, 'width': W}")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """Resize (`size` = (H, W), or `shortest_edge`), optional center `crop`, rescale, normalize."""

    size: tuple[int, int] | None = (224, 224)
    shortest_edge: int | None = None
    crop: tuple[int, int] | None = None
    resample: int = Image.Resampling.BILINEAR
    do_resize: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    mean: tuple[float, ...] = IMAGENET_STANDARD_MEAN
    std: tuple[float, ...] = IMAGENET_STANDARD_STD
    processor_type: str = "ViTImageProcessor"
    crop_rounding: str = "floor"  # center-crop offset: "floor" (transformers) or "round" (torchvision, timm)

    cover: tuple[int, int] | None = None  # resize keeping the aspect ratio to just cover (H, W) (timm)

    def __post_init__(self):
        if self.do_resize and sum(x is not None for x in (self.size, self.shortest_edge, self.cover)) != 1:
            raise BadValue("Preprocessing needs exactly one of size=(H, W), shortest_edge=N or cover=(H, W) "
                           "to resize")
        if self.crop is None and (not self.do_resize or self.size is None):
            raise BadValue("Preprocessing without a fixed resize size needs crop=(H, W) to fix the input size")

    # --- construction -------------------------------------------------------------------------------
    @classmethod
    def default(cls, image_size: int | tuple[int, int] = 224) -> "Preprocessing":
        """ViTImageProcessor defaults: bilinear resize to image_size, scale to [-1, 1]."""
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        return cls(size=size)

    @classmethod
    def from_hf(cls, config: dict) -> "Preprocessing":
        """From a `preprocessor_config.json` dict (current or legacy feature-extractor format)."""
        kind = config.get("image_processor_type") or config.get("feature_extractor_type") or "ViTImageProcessor"
        kind = kind.replace("FeatureExtractor", "ImageProcessor").removesuffix("Pil")
        size_cfg = config.get("size", 224)
        size = shortest = None
        if isinstance(size_cfg, dict) and "shortest_edge" in size_cfg:
            shortest = int(size_cfg["shortest_edge"])
        elif isinstance(size_cfg, int) and kind in _SHORTEST_EDGE_PROCESSORS:
            shortest = size_cfg
        else:
            size = _hw(size_cfg, "size")
        crop = _hw(config.get("crop_size", 224), "crop_size") if config.get("do_center_crop", False) else None
        return cls(
            size=size,
            shortest_edge=shortest,
            crop=crop,
            resample=int(config.get("resample", Image.Resampling.BILINEAR)),
            do_resize=bool(config.get("do_resize", True)),
            do_rescale=bool(config.get("do_rescale", True)),
            rescale_factor=float(config.get("rescale_factor", 1 / 255)),
            do_normalize=bool(config.get("do_normalize", True)),
            mean=tuple(float(m) for m in config.get("image_mean", IMAGENET_STANDARD_MEAN)),
            std=tuple(float(s) for s in config.get("image_std", IMAGENET_STANDARD_STD)),
            processor_type=kind,
        )

    def to_hf(self) -> dict:
        """A `preprocessor_config.json` dict that transformers' AutoImageProcessor reads back identically."""
        config = {
            "image_processor_type": self.processor_type,
            "do_resize": self.do_resize,
            "size": ({"height": self.size[0], "width": self.size[1]} if self.size is not None
                     # `cover` has no transformers equivalent: its shorter side is the nearest one.
                     else {"shortest_edge": self.shortest_edge or min(self.cover)}),
            "resample": int(self.resample),
            "do_center_crop": self.crop is not None,
            "do_rescale": self.do_rescale,
            "rescale_factor": self.rescale_factor,
            "do_normalize": self.do_normalize,
            "image_mean": list(self.mean),
            "image_std": list(self.std),
            "do_convert_rgb": True,
        }
        if self.crop is not None:
            config["crop_size"] = {"height": self.crop[0], "width": self.crop[1]}
        return config

    def with_input_size(self, input_size: tuple[int, int]) -> "Preprocessing":
        """The same pipeline producing `input_size` images (fine-tuning at another resolution): the crop
        becomes input_size and the resize grows in proportion; a plain resize goes to input_size."""
        input_size = tuple(int(s) for s in input_size)
        if self.crop is None:
            return dataclasses.replace(self, size=input_size)
        ratio = input_size[0] / self.crop[0]
        if self.shortest_edge is not None:
            return dataclasses.replace(self, crop=input_size, shortest_edge=round(self.shortest_edge * ratio))
        if self.cover is not None:
            cover = (round(self.cover[0] * ratio), round(self.cover[1] * input_size[1] / self.crop[1]))
            return dataclasses.replace(self, crop=input_size, cover=cover)
        size = (round(self.size[0] * ratio), round(self.size[1] * input_size[1] / self.crop[1]))
        return dataclasses.replace(self, crop=input_size, size=size if self.size else None)

    # --- the pipeline ------------------------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) of the images the model sees."""
        return self.crop if self.crop is not None else self.size

    def _resize_to(self, width: int, height: int) -> tuple[int, int]:
        """PIL (width, height) after resizing, as transformers computes it."""
        if self.size is not None:
            return self.size[1], self.size[0]
        if self.cover is not None:  # timm's ResizeKeepRatio(longest=0)
            ratio = min(height / self.cover[0], width / self.cover[1])
            return round(width / ratio), round(height / ratio)
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def to_uint8(self, image: Image.Image) -> np.ndarray:
        """PIL image (any mode) -> uint8 [H, W, 3] at `input_size`: EXIF transpose, RGB, resize, crop."""
        image = to_rgb(ImageOps.exif_transpose(image))
        if self.do_resize:
            image = image.resize(self._resize_to(*image.size), resample=self.resample)
        array = np.asarray(image, dtype=np.uint8)
        if self.crop is not None:
            array = _center_crop(array, self.crop, self.crop_rounding)
        return array

    def normalize(self, x):
        """uint8 [..., H, W, 3] (numpy or jax) -> float32, HF rescale + normalize."""
        if isinstance(x, np.ndarray):
            x = x.astype(np.float64) * self.rescale_factor if self.do_rescale else x
            x = x.astype(np.float32)
            xp = np
        else:
            import jax.numpy as xp

            x = x.astype(xp.float32)
            x = x * xp.float32(self.rescale_factor) if self.do_rescale else x
        if self.do_normalize:
            x = (x - xp.asarray(self.mean, xp.float32)) / xp.asarray(self.std, xp.float32)
        return x

    def __call__(self, images: Image.Image | Iterable[Image.Image]) -> np.ndarray:
        """PIL image(s) -> float32 [B, 3, H, W], equal to the HF processor's `pixel_values`."""
        if isinstance(images, Image.Image):
            images = [images]
        batch = np.stack([self.to_uint8(image) for image in images])
        return np.ascontiguousarray(self.normalize(batch).transpose(0, 3, 1, 2))


def _center_crop(array: np.ndarray, crop: tuple[int, int], rounding: str = "floor") -> np.ndarray:
    """transformers' center_crop on HWC: offsets floor((in - out) / 2), zero padding when too small;
    rounding="round": torchvision's CenterCrop offsets, int(round((in - out) / 2)) (half to even)."""
    height, width = array.shape[:2]
    ch, cw = crop
    if ch > height or cw > width:
        padded = np.zeros((max(ch, height), max(cw, width), array.shape[2]), array.dtype)
        top, left = -(-(padded.shape[0] - height) // 2), -(-(padded.shape[1] - width) // 2)
        padded[top:top + height, left:left + width] = array
        array, height, width = padded, padded.shape[0], padded.shape[1]
    if rounding == "round":
        top, left = int(round((height - ch) / 2.0)), int(round((width - cw) / 2.0))
    else:
        top, left = (height - ch) // 2, (width - cw) // 2
    return array[top:top + ch, left:left + cw]
