"""Test-wide settings: offline hub, CPU backend, float32 matmuls for parity tests."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def _define_missing_torchvision_ops() -> None:
    """PyPI's torchvision wheel is built against CUDA torch; beside the CPU torch its C ops do not load, and
    `import torchvision` then fails on two unguarded fake registrations ("operator torchvision::nms does not
    exist"). Declaring those two schemas lets the pure-Python parts timm uses (transforms, feature
    extraction) import; calling nms would still fail loudly. A no-op where the ops load."""
    import importlib.util

    if importlib.util.find_spec("torchvision") is None:
        return
    import torch

    try:
        torch.ops.torchvision.nms  # noqa: B018
    except (AttributeError, RuntimeError):
        pass
    else:
        return
    import glob
    import os

    spec = importlib.util.find_spec("torchvision")
    for library in glob.glob(os.path.join(os.path.dirname(spec.origin), "_C*.so")):
        try:
            torch.ops.load_library(library)
            return
        except (OSError, RuntimeError):
            pass
    lib = torch.library.Library("torchvision", "DEF")  # noqa: F841 (kept alive by torch's registry)
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    globals()["_TORCHVISION_SHIM"] = lib


_define_missing_torchvision_ops()


from tests.s3_server import s3_bucket, s3_env, s3_server  # noqa: E402,F401 (fixtures for the object-storage tests)
