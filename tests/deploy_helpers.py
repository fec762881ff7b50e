"""Test helpers for deployment: tiny trained-looking model folders of every task and uint8 images.

`hf_model_folder` saves a tiny transformers classifier (ViT, DeiT or DINOv2) with a random head as a
`best/` folder; `native_model_folder` writes a `best_vitjax/` folder of a task with random weights
(biases included, so no output is trivially zero); `digits_classifier_folder` a real classifier of
scikit-learn's digit scans (a random backbone, a logistic-regression head on its features);
`free_port` and `wait_healthy` start a real server process.
"""
import functools
import io
import socket
import time

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from hf_oracle import TINY, make
from vitjax.api import Classifier, load_pretrained
from vitjax.checkpoints.native import export_native
from vitjax.checkpoints.preprocessing import Preprocessing
from vitjax.models.model import Model
from vitjax.models.vit import ViT, ViTSpec
from vitjax.trained import make_task

LABELS = {0: "apple", 1: "banana", 2: "cherry", 3: "date"}
BACKBONES = {
    "vit": ("ViTForImageClassification", "ViTConfig", dict(intermediate_size=64)),
    "deit": ("DeiTForImageClassificationWithTeacher", "DeiTConfig", dict(intermediate_size=64)),
    "dinov2": ("Dinov2ForImageClassification", "Dinov2Config", dict(mlp_ratio=2)),
}


def _noisy(tree, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: (p + 0.5 * rng.standard_normal(p.shape)).astype(np.float32), tree)


def hf_model_folder(root, backbone: str = "vit") -> str:
    """A Hugging Face `best/`-like folder: a tiny `backbone` classifier at 32 px, random head."""
    cls_name, config_name, extra = BACKBONES[backbone]
    make(cls_name, config_name, **TINY, **extra, image_size=32, num_labels=4).save_pretrained(root / "src")
    clf = load_pretrained(root / "src", id2label=LABELS)
    clf.params["head"] = _noisy(clf.params["head"], 0)
    return clf.save_pretrained(root / "best")


def native_model_folder(root, task_config: dict, class_names, seed: int = 0) -> str:
    """A `best_vitjax/` folder of the task `task_config` on a tiny ViT at 32 px, random weights."""
    spec = ViTSpec(image_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=4, mlp_dim=64)
    task = make_task(task_config, class_names)
    model = Model(ViT(spec), task.make_head(spec))
    dummy = jnp.zeros((1, 32, 32, 3), jnp.float32)
    params = jax.jit(functools.partial(model.init, train=False))(jax.random.key(seed), dummy)["params"]
    return export_native(str(root / "best_vitjax"), spec, _noisy(jax.device_get(params), seed),
                         Preprocessing.default(32), task.name, task_config, class_names)


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digit scans as uint8 RGB [N, 16, 16, 3], and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = [Image.fromarray(np.round(d * 255 / 16).astype(np.uint8)).resize((16, 16), Image.NEAREST)
            for d in digits.images]
    return np.stack([np.asarray(g.convert("RGB")) for g in grey]), digits.target


def digits_classifier_folder(root, images: np.ndarray, labels: np.ndarray) -> str:
    """A `best/` folder classifying 16 px digit scans: a random 1-block ViT whose head is a logistic
    regression fitted on its pooled features of `images` (test accuracy ~0.55, chance 0.1)."""
    from sklearn.linear_model import LogisticRegression

    spec = ViTSpec(image_size=16, patch_size=4, hidden_size=64, num_layers=1, num_heads=4, mlp_dim=128)
    clf = Classifier.from_scratch(spec, {i: str(i) for i in range(spec.hidden_size)})
    clf.params["head"]["classifier"] = {"kernel": np.eye(spec.hidden_size, dtype=np.float32),
                                        "bias": np.zeros(spec.hidden_size, np.float32)}
    head = LogisticRegression(max_iter=3000).fit(clf.logits(images.transpose(0, 3, 1, 2)), labels)
    clf = Classifier.from_scratch(spec, {i: str(i) for i in range(10)})
    clf.params["head"]["classifier"] = {"kernel": head.coef_.T.astype(np.float32),
                                        "bias": head.intercept_.astype(np.float32)}
    return clf.save_pretrained(root / "best")


def uint8_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def png_bytes(height: int = 40, width: int = 30, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process, seconds: float = 240, output=None) -> None:
    """Waits for `url`/health to answer 200; `output()` (default: the process's stderr) explains a
    server that exits first."""
    import httpx

    deadline = time.time() + seconds
    while time.time() < deadline:
        assert process.poll() is None, (output or process.stderr.read)()
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the server did not come up: {(output or process.stderr.read)()}")
