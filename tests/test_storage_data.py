"""Data and pretrained checkpoints on object storage, against a real S3 API server (tests/s3_server.py: moto's
server mode on 127.0.0.1, never a mocked client). What is uploaded goes up with boto3, not with the layer
under test; each remote source must give what the same files on local disk give: the same split and the same
training run, the same logits, the same records, and one-line errors naming the URL."""
import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file

from dense_helpers import coco_folder, segmentation_folder
from test_data_fakes import FakePreprocessing, data_config
from train_helpers import colour_folder, csv_folder, tiny_config
from vitjax import modes, registry, storage
from vitjax.data import cache


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A HOME of this test's own: the copies of remote data (~/.cache/vitjax/remote) land in tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def upload(local: str, url: str) -> str:
    """Every file under `local` put to `url` (s3://bucket/prefix) with boto3; returns `url`."""
    import boto3

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    client = boto3.client("s3")
    for root, _, files in os.walk(local):
        for name in files:
            key = os.path.relpath(os.path.join(root, name), local).replace(os.sep, "/")
            client.upload_file(os.path.join(root, name), bucket, f"{prefix}/{key}")
    return url


def open_dataset(task: str, source: str):
    registry.load_plugins()
    task_cfg = registry.task_config("classification" if task == "multilabel" else task)
    if task == "multilabel":
        task_cfg.multilabel = True
    return registry.get_task(task_cfg.name).open_source(data_config(source=source), task_cfg)


def records(dataset, root: str) -> dict:
    """Every record of every split, file paths relative to `root` and image files as their bytes."""
    def plain(value):
        if isinstance(value, str) and value.startswith(root) and os.path.isfile(value):
            with open(value, "rb") as f:
                return os.path.relpath(value, root), f.read()
        if isinstance(value, str):
            return value.replace(root, "<root>")
        return np.asarray(value).tolist()

    return {name: [{k: plain(v) for k, v in split[i].items()} for i in range(len(split))]
            for name, split in dataset.splits.items()}


def test_a_data_folder_on_s3_trains_like_the_same_folder_on_disk(s3_bucket, tmp_path):
    data = colour_folder(str(tmp_path / "data"), per_class=8)
    remote = upload(data, f"{s3_bucket}/images")
    results = {}
    for name, source in (("local", data), ("s3", remote)):
        results[name] = modes.train(tiny_config(f"folder:{source}", epochs=1, batch_size=8), str(tmp_path / name))
    split = {name: json.loads((tmp_path / name / "data_split.json").read_text()) for name in results}
    assert split["s3"]["source"] == f"folder:{remote}"
    assert split["s3"]["splits"] == split["local"]["splits"]  # the same files (relative ids), labels, split
    for run in results.values():
        run["final_train"].pop("images_per_s")  # the one figure that is not the run's own
    assert {k: results["s3"][k] for k in ("best_step", "metrics", "final_train")} == \
        {k: results["local"][k] for k in ("best_step", "metrics", "final_train")}
    weights = {name: load_file(str(tmp_path / name / "best" / "model.safetensors")) for name in results}
    assert weights["s3"].keys() == weights["local"].keys()
    for key, value in weights["local"].items():
        np.testing.assert_array_equal(weights["s3"][key], value, err_msg=key)


def test_remote_copies_and_decode_caches_follow_the_content(s3_bucket, tmp_path, home):
    """Opened twice, an unchanged folder is copied once; an image rewritten under the same name gives a
    new local copy, so the decode cache (named by the records) is a new file, not stale pixels."""
    data = colour_folder(str(tmp_path / "data"), per_class=4)
    remote = upload(data, f"{s3_bucket}/images")
    config = data_config(source=f"folder:{remote}", cache="disk", cache_dir=str(tmp_path / "decoded"))

    def decode_cache_file():
        train = open_dataset("classification", config.source).splits["train"]
        return cache.cache_path(config, train, "eval", (16, 16, 3), repr(FakePreprocessing()))

    first = decode_cache_file()
    assert decode_cache_file() == first
    copies = os.listdir(home / ".cache" / "vitjax" / "remote")
    assert len(copies) == 1 and not first.startswith(str(tmp_path / "data"))
    import boto3
    boto3.client("s3").upload_file(os.path.join(data, "blue", "000.png"), s3_bucket.removeprefix("s3://"),
                                   "images/red/000.png")
    assert decode_cache_file() != first
    assert len(os.listdir(home / ".cache" / "vitjax" / "remote")) == 2


def test_coco_segmentation_and_multilabel_folders_on_s3_read_the_same_records(s3_bucket, tmp_path):
    layouts = {"detection": (coco_folder(str(tmp_path / "coco"), count=10), "coco", "/annotations.json"),
               "segmentation": (segmentation_folder(str(tmp_path / "seg"), count=10), "", ""),  # a bare URL
               "multilabel": (csv_folder(str(tmp_path / "ml"), count=10), "folder", "")}
    for task, (local, kind, suffix) in layouts.items():
        remote = upload(local, f"{s3_bucket}/{task}")
        ours = open_dataset(task, f"{kind}:{remote}{suffix}".lstrip(":"))
        theirs = open_dataset(task, f"{kind}:{local}{suffix}".lstrip(":"))
        assert ours.class_names == theirs.class_names, task
        copy = storage.cached_copy(remote)
        assert records(ours, copy) == records(theirs, local), task


def test_a_checkpoint_and_images_on_s3_give_the_local_folders_logits_and_predictions(s3_bucket, tmp_path):
    from hf_oracle import TINY, make, pixels, rel_err, torch_forward
    from vitjax.api import load_pretrained

    model = make("ViTForImageClassification", "ViTConfig", image_size=16, num_labels=3,
                 id2label={0: "red", 1: "green", 2: "blue"}, **TINY)
    folder = str(tmp_path / "vit-tiny")
    model.save_pretrained(folder)
    remote = upload(folder, f"{s3_bucket}/vit-tiny")
    x = pixels(2, 16, 16)
    logits = load_pretrained(remote).logits(x)  # config.model.checkpoint's loader
    np.testing.assert_array_equal(logits, load_pretrained(folder).logits(x))
    assert rel_err(logits, torch_forward(model, x).logits.numpy()) < 1e-4
    from test_families_timm import _augreg_npz  # a big_vision/AugReg .npz: one file on s3
    (tmp_path / "npz").mkdir()
    _augreg_npz(tmp_path / "npz" / "augreg.npz")
    remote_npz = upload(str(tmp_path / "npz"), f"{s3_bucket}/npz") + "/augreg.npz"
    x = pixels(2, 32, 32)
    np.testing.assert_array_equal(load_pretrained(remote_npz).logits(x),
                                  load_pretrained(tmp_path / "npz" / "augreg.npz").logits(x))
    images = colour_folder(str(tmp_path / "images"), per_class=2)
    remote_images = upload(images, f"{s3_bucket}/images")
    predicted = {}
    for name, (model_dir, inputs) in {"s3": (remote, remote_images), "local": (folder, images)}.items():
        found = modes.predict(None, None, model_dir, [inputs], None, str(tmp_path / f"predictions-{name}"))
        root = os.path.commonpath([r["file"] for r in found])
        predicted[name] = [{**r, "file": os.path.relpath(r["file"], root)} for r in found]
    assert len(predicted["s3"]) == 6 and predicted["s3"] == predicted["local"]


def test_a_missing_bucket_prefix_or_credentials_is_one_line_naming_the_url(s3_bucket, tmp_path, monkeypatch):
    from vitjax.checkpoints.families import load_checkpoint

    cases = [(lambda: open_dataset("classification", f"folder:{s3_bucket}/no-such-folder"),
              f"{s3_bucket}/no-such-folder does not exist"),
             (lambda: open_dataset("classification", "folder:s3://no-such-bucket-here/images"),
              "s3://no-such-bucket-here/images does not exist"),
             (lambda: load_checkpoint(f"{s3_bucket}/vit-tiny"), f"{s3_bucket}/vit-tiny does not exist")]
    for call, start in cases:
        with pytest.raises(FileNotFoundError) as error:
            call()
        message = str(error.value)
        assert message.startswith(start) and "check the bucket name and the path" in message
        assert "\n" not in message and error.value.__suppress_context__
    from gcsfs.retry import validate_response  # how gcsfs turns a GCS answer into an error
    for status, start in ((401, "no credentials to read gs://b/x (Invalid Credentials, 401)"),
                          (403, "access to gs://b/x was refused (Forbidden: b/x)")):
        with pytest.raises(PermissionError) as error, storage.remote_errors("gs://b/x"):
            validate_response(status, b'{"error": {"message": "Invalid Credentials"}}', "b/x")
        assert str(error.value).startswith(start) and "\n" not in str(error.value)
    import boto3
    boto3.client("s3").put_object(Bucket=s3_bucket.removeprefix("s3://"), Key="odd/../up.png", Body=b"x")
    with pytest.raises(ValueError, match=r"odd: object names \['../up.png'\] cannot be local file names"):
        storage.cached_copy(f"{s3_bucket}/odd")  # nothing is written outside the copy
    with pytest.raises(ValueError, match=r"cache_dir='s3://b/c' is on object storage.*give a local folder"):
        cache.disk_cache_dir(data_config(cache="disk", cache_dir="s3://b/c"))

    colour_folder(str(tmp_path / "data"), per_class=1)
    upload(str(tmp_path / "data"), f"{s3_bucket}/images")
    assert storage.isdir(f"{s3_bucket}/images")  # epath keeps its client for the process: made with credentials
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(key, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    import s3fs
    s3fs.S3FileSystem.clear_instance_cache()  # a client made with the credentials above would be reused
    try:
        with pytest.raises(PermissionError) as error:
            open_dataset("classification", f"folder:{s3_bucket}/images")
    finally:
        s3fs.S3FileSystem.clear_instance_cache()  # and none without them is left to later tests
    message = str(error.value)
    assert message.startswith(f"no credentials to read {s3_bucket}/images") and "AWS_ACCESS_KEY_ID" in message
    assert "\n" not in message


def test_the_layer_sees_objects_another_client_wrote_after_a_listing(s3_bucket):
    """Another process's write (here boto3's) after this process listed the folder: no client of the layer
    answers from a listing it keeps (s3fs keeps them for its lifetime unless told not to)."""
    import boto3

    run = f"{s3_bucket}/run"
    storage.write_text(f"{run}/a.txt", "a")
    assert storage.isdir(run) and not storage.exists(f"{run}/b.txt")
    boto3.client("s3").put_object(Bucket=s3_bucket.removeprefix("s3://"), Key="run/b.txt", Body=b"b")
    assert storage.exists(f"{run}/b.txt") and storage.isfile(f"{run}/b.txt")
    assert storage.read_text(f"{run}/b.txt") == "b"
