"""Sources: in-memory Hugging Face datasets, image folders, digits, TFDS message, and their bad inputs."""
import io
import logging
import os
import sys

import datasets
import numpy as np
import pytest
from PIL import Image

from test_data_fakes import data_config, make_folder, write_image
from vitjax.data import hf
from vitjax.data.sources import open_source
from vitjax.data.transforms import load_rgb


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((6, 5, 3), seed * 5 % 256, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _hf(n=20, image="image", label="label", names=("cat", "dog"), extra=None):
    columns = {image: [{"bytes": _png(i), "path": None} for i in range(n)], label: [i % 2 for i in range(n)]}
    features = {image: datasets.Image(), label: datasets.ClassLabel(names=list(names))}
    for col, (values, feature) in (extra or {}).items():
        columns[col], features[col] = values, feature
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def test_hf_dataset_auto_columns_class_names_and_carved_splits():
    ds = hf.open_hf_dataset(_hf(40), data_config())
    assert ds.class_names == ["cat", "dog"]
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 32, "validation": 4, "test": 4}
    record = ds.splits["train"][0]
    assert isinstance(record["label"], int)
    assert load_rgb(record["image"], "x").size == (5, 6)


def test_hf_datasetdict_img_labels_columns_and_named_splits():
    dsd = datasets.DatasetDict({"train": _hf(10, "img", "labels"), "valid": _hf(4, "img", "labels")})
    ds = hf.open_hf_dataset(dsd, data_config())
    assert ds.origin["validation"] == "valid" and len(ds.splits["validation"]) == 4
    assert len(ds.splits["train"]) + len(ds.splits["test"]) == 10


def test_hf_string_and_int_labels():
    strings = datasets.Dataset.from_dict({"image": [{"bytes": _png(i), "path": None} for i in range(6)],
                                          "label": ["b", "a", "c", "a", "b", "c"]},
                                         features=datasets.Features({"image": datasets.Image(),
                                                                     "label": datasets.Value("string")}))
    ds = hf.open_hf_dataset(strings, data_config(split_fractions=(1, 1, 1)))
    assert ds.class_names == ["a", "b", "c"]
    assert sorted(np.concatenate([s.labels() for s in ds.splits.values()]).tolist()) == [0, 0, 1, 1, 2, 2]


def test_hf_missing_and_ambiguous_columns():
    no_label = _hf(4).remove_columns("label")
    with pytest.raises(KeyError, match=r"no label column.*\['image'\].*label_column"):
        hf.open_hf_dataset(no_label, data_config())
    with pytest.raises(KeyError, match="'photo' is not a column.*'image', 'label'"):
        hf.open_hf_dataset(_hf(4), data_config(image_column="photo"))
    two = _hf(4, label="fine", extra={"coarse": ([0, 0, 1, 1], datasets.ClassLabel(names=["x", "y"]))})
    with pytest.raises(ValueError, match=r"label column is ambiguous.*'fine', 'coarse'"):
        hf.open_hf_dataset(two, data_config())
    ds = hf.open_hf_dataset(two, data_config(label_column="coarse", split_fractions=(2, 1, 1)))
    assert ds.class_names == ["x", "y"]


def test_hf_label_outside_class_list():
    dsd = datasets.DatasetDict({"train": _hf(6), "test": _hf(3)})
    test = dsd["test"].cast_column("label", datasets.Value("int64")).map(lambda r: {"label": -1})
    dsd["test"] = test.cast_column("label", datasets.ClassLabel(names=["cat", "dog"]))
    with pytest.raises(ValueError, match=r"split 'test' has 3 label\(s\) outside the 2 classes.*label -1.*carve"):
        hf.open_hf_dataset(dsd, data_config())
    ds = hf.open_hf_dataset(dsd, data_config(test_split="carve", split_fractions=(4, 1, 1)))
    assert "carved" in ds.origin["test"] and len(ds.splits["test"]) == 1


def test_folder_with_split_folders(tmp_path):
    root = make_folder(str(tmp_path), {"train": {"b": 5, "a": 5}, "validation": {"a": 2, "b": 2}})
    ds = open_source(data_config(source=f"folder:{root}"))
    assert ds.class_names == ["a", "b"]
    assert len(ds.splits["validation"]) == 4 and ds.origin["validation"] == "validation"
    assert len(ds.splits["train"]) + len(ds.splits["test"]) == 10
    assert ds.splits["validation"].ids() == ["validation/a/img_000.jpg", "validation/a/img_001.png",
                                             "validation/b/img_000.jpg", "validation/b/img_001.png"]


def test_plain_path_single_class_folder_and_odd_names(tmp_path):
    root = make_folder(str(tmp_path / "d"), {"": {"x": 4, "y": 4}})
    odd = os.path.join(os.fsencode(root), b"y", b"caf\xe9 \xff.jpg")  # not valid UTF-8
    pixels = np.zeros((5, 5, 3), np.uint8)
    with open(odd, "wb") as f:
        Image.fromarray(pixels).save(f, "JPEG")
    ds = open_source(data_config(source=root, split_fractions=(0.5, 0.25, 0.25)))
    assert sum(len(s) for s in ds.splits.values()) == 9
    names = [p for s in ds.splits.values() for p in s.ids()]
    odd_name = next(n for n in names if "caf" in n)
    assert load_rgb(os.path.join(root, odd_name), odd_name).size == (5, 5)


def test_folder_bad_inputs(tmp_path):
    root = make_folder(str(tmp_path / "empty_class"), {"train": {"a": 2}})
    os.makedirs(os.path.join(root, "train", "b"))
    with pytest.raises(ValueError, match=r"1 class folders without images \(add their images or delete the "
                                         r"folders\): .*train/b"):
        open_source(data_config(source=root))
    root = make_folder(str(tmp_path / "no_images"), {"train": {"a": 2}})
    os.makedirs(os.path.join(root, "test"))
    with pytest.raises(ValueError, match=r"no_images/test has no class subfolders"):
        open_source(data_config(source=root))
    root = make_folder(str(tmp_path / "stray"), {"train": {"a": 2}})
    open(os.path.join(root, "train", "a", "notes.txt"), "w").write("hi")
    with pytest.raises(ValueError, match=r"1 entries that are not image files .*a/notes.txt(.|\n)*skip_corrupt=True"):
        open_source(data_config(source=root))
    root = make_folder(str(tmp_path / "zero"), {"train": {"a": 2}})
    open(os.path.join(root, "train", "a", "zero.jpg"), "wb").close()
    with pytest.raises(ValueError, match=r"1 zero-byte files \(copy them again\): .*a/zero.jpg"):
        open_source(data_config(source=root))
    with pytest.raises(FileNotFoundError, match="does_not_exist does not exist"):
        open_source(data_config(source=f"folder:{tmp_path}/does_not_exist"))


def _with_corrupt_files(root):
    make_folder(root, {"": {"a": 6, "b": 6}})
    open(os.path.join(root, "a", "zero.jpg"), "wb").close()
    open(os.path.join(root, "b", "notes.txt"), "w").write("not an image")
    truncated = write_image(os.path.join(root, "a", "truncated.jpg"), 1, size=(64, 64))
    data = open(truncated, "rb").read()
    open(truncated, "wb").write(data[: len(data) // 2])
    open(os.path.join(root, "b", "garbage.png"), "wb").write(b"this is not a png")
    return root


def test_a_file_corrupted_after_the_scan_fails_at_decode_naming_it(tmp_path):
    path = os.path.join(_with_corrupt_files(str(tmp_path)), "b", "garbage.png")
    with pytest.raises(ValueError, match=r"Cannot decode image .*b/garbage.png.*skip_corrupt=True"):
        load_rgb(path, path)


def test_skip_corrupt_warns_with_the_list(tmp_path, caplog):
    root = _with_corrupt_files(str(tmp_path))
    with caplog.at_level(logging.WARNING):
        ds = open_source(data_config(source=root, skip_corrupt=True, split_fractions=(1, 0, 0),
                                     validation_split="train", test_split="train"))
    assert len(ds.splits["train"]) == 12
    assert "leaving out 4 problem file(s)/folder(s)" in caplog.text
    assert "truncated.jpg" in caplog.text and "garbage.png" in caplog.text
    assert "zero.jpg" in caplog.text and "notes.txt" in caplog.text


def test_digits_demo():
    ds = open_source(data_config(source="demo:digits"))
    assert sum(len(s) for s in ds.splits.values()) == 1797 and ds.class_names == [str(i) for i in range(10)]
    record = ds.splits["train"][0]
    assert record["image"].shape == (8, 8, 3) and record["image"].dtype == np.uint8
    assert record["image"].max() > 200


def test_hub_dataset_failure_is_explained():
    with pytest.raises(ValueError, match=r"'hf:no-such/dataset-xyz': datasets.load_dataset.*failed"):
        open_source(data_config(source="hf:no-such/dataset-xyz"))


def test_unknown_source_and_missing_tfds(monkeypatch):
    with pytest.raises(ValueError, match=r"Unknown config.data.source 'beans'.*'hf:NAME"):
        open_source(data_config(source="beans"))
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as if not installed (the test extra has it)
    with pytest.raises(ImportError, match=r"pip install 'vitjax\[tfds\]'"):
        open_source(data_config(source="tfds:cifar10"))


def test_missing_configured_split():
    with pytest.raises(KeyError, match=r"validation_split='dev' is not a split.*\['train'\]"):
        hf.open_hf_dataset(_hf(10), data_config(validation_split="dev"))
