"""The segmentation plugin: hand-computed mIoU, ignore index and padding, paired augmentation, sources,
and a tiny model trained through the real trainer on coloured shapes."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from dense_helpers import dense_config, segmentation_folder, shapes_scene, untrained_then_trained
from train_helpers import export_without_data
from vitjax import registry
from vitjax.checkpoints.native import load_native
from vitjax.data import pipeline
from vitjax.data.config import default_config as data_default_config
from vitjax.metrics import iou_stats
from vitjax.train import setup

registry.load_plugins()
from vitjax.tasks import segmentation  # noqa: E402 - registered by load_plugins above

CLASSES = ("background", "red", "green")


def make_task(**knobs):
    return registry.get_task("segmentation")(ml_collections.ConfigDict(knobs), CLASSES)


def onehot_logits(predicted):
    return jax.nn.one_hot(jnp.asarray(predicted), len(CLASSES)) * 10.0


def test_miou_and_pixel_accuracy_match_a_hand_computed_case():
    task = make_task()
    labels = np.array([[[0, 0], [1, 255]], [[2, 2], [1, 0]], [[1, 1], [1, 1]]], np.int32)
    predicted = np.array([[[0, 1], [1, 2]], [[2, 0], [1, 0]], [[0, 0], [0, 0]]])
    batch = {"image": np.zeros((3, 2, 2, 3), np.uint8), "mask": labels,
             "valid": np.array([True, True, False])}  # the third row is padding
    metrics = task.metrics().single_from_model_output(**task.metric_inputs(onehot_logits(predicted), batch, task.loss(onehot_logits(predicted), batch)[1]))
    computed = jax.device_get(metrics.compute())
    # Rows true, columns predicted: true 0 -> (2, 1, 0), true 1 -> (0, 2, 0), true 2 -> (1, 0, 1).
    np.testing.assert_array_equal(computed["confusion_matrix"], [[2, 1, 0], [0, 2, 0], [1, 0, 1]])
    summary = task.summarize(computed)
    iou = [2 / (3 + 3 - 2), 2 / (2 + 3 - 2), 1 / (2 + 1 - 1)]
    assert summary["mean_iou"] == pytest.approx(np.mean(iou))
    assert summary["pixel_accuracy"] == pytest.approx(5 / 7)
    rows = task.per_class_rows(computed)
    assert [row["iou"] for row in rows] == pytest.approx(iou)
    # A class absent from labels and predictions has no IoU and stays out of the mean.
    stats = iou_stats(np.array([[3, 1, 0], [0, 0, 0], [0, 0, 0]]))
    assert np.isnan(stats["iou"][2]) and stats["mean_iou"] == pytest.approx((3 / 4 + 0) / 2)


def test_dice_and_iou_match_scikit_learn_on_random_pixels():
    """Dice is the per-class F1 of the pixels and IoU their Jaccard index: scikit-learn's, from the
    confusion matrix our clu metric sums."""
    from sklearn import metrics as sk

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (2, 8, 8)).astype(np.int32)
    logits = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    task = make_task()
    batch = {"image": np.zeros((2, 8, 8, 3), np.uint8), "mask": labels}
    computed = jax.device_get(task.metrics().single_from_model_output(
        **task.metric_inputs(jnp.asarray(logits), batch, task.loss(jnp.asarray(logits), batch)[1])).compute())
    truth, predicted = labels.ravel(), logits.argmax(-1).ravel()
    stats = iou_stats(computed["confusion_matrix"])
    np.testing.assert_allclose(stats["dice"], sk.f1_score(truth, predicted, average=None), rtol=1e-12)
    np.testing.assert_allclose(stats["iou"], sk.jaccard_score(truth, predicted, average=None), rtol=1e-12)
    assert task.summarize(computed)["mean_dice"] == pytest.approx(sk.f1_score(truth, predicted, average="macro"))


def test_loss_skips_ignored_pixels_and_padding_rows():
    task = make_task()
    labels = np.array([[[1, 255]], [[2, 2]]], np.int32)
    logits = jnp.zeros((2, 1, 2, 3)).at[0, 0, 1].set(jnp.array([50.0, -50.0, 0.0]))
    loss, _ = task.loss(logits, {"mask": labels, "valid": np.array([True, False])})
    assert float(loss) == pytest.approx(np.log(3))  # only the one labelled pixel of row 0 counts


def test_head_upsamples_and_logits_follow_the_mask_size():
    head = segmentation.SegmentationHead(num_classes=3, upsample_steps=2, channels=8)
    features = {"patches": jnp.ones((2, 4, 4, 16))}
    out, _ = jax.jit(head.init_with_output)(jax.random.key(0), features)
    assert out.shape == (2, 16, 16, 3)
    task = make_task(upsample_steps=2)
    batch = {"image": np.zeros((2, 32, 32, 3), np.uint8), "mask": np.zeros((2, 32, 32), np.int32)}
    inputs = task.metric_inputs(out, batch, task.loss(out, batch)[1])
    assert inputs["logits"].shape == (2, 32, 32, 3)


def test_soft_dice_matches_a_hand_computed_case_and_skips_ignored_pixels():
    """One image of 4 pixels, labels (0, 0, 1, ignored), softmax probabilities as written; class 2 is
    only under the ignored pixel, so it is not present. Class 0: 2 * 1.5 / (1.75 + 2) = 0.8, class 1:
    2 * 0.75 / (1.25 + 1) = 2/3; Dice loss 1 - (0.8 + 2/3) / 2. A padding row and an image with only
    ignored pixels count in neither loss."""
    probabilities = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.25, 0.75, 0.0], [0.0, 0.0, 1.0]])
    logits = jnp.log(jnp.maximum(jnp.asarray(probabilities, jnp.float32), 1e-20))[None, None]
    logits = jnp.concatenate([logits, jnp.zeros_like(logits), jnp.zeros_like(logits)])  # [3, 1, 4, 3]
    labels = np.array([[[0, 0, 1, 255]], [[1, 1, 1, 1]], [[255, 255, 255, 255]]], np.int32)
    batch = {"mask": labels, "valid": np.array([True, False, True])}
    dice = 1 - (0.8 + 2 / 3) / 2
    ce = -(np.log(0.5) + np.log(1.0) + np.log(0.75)) / 3
    for name, expected in (("dice", dice), ("ce+dice", ce + dice), ("ce", ce)):
        loss, aux = make_task(loss=name).loss(logits, batch)
        assert float(loss) == pytest.approx(expected, rel=1e-5), name
        assert float(aux["loss"][0]) == pytest.approx(expected, rel=1e-5), name
        np.testing.assert_array_equal(aux["mask"], [True, False, False])


def test_soft_dice_of_hard_predictions_is_one_minus_scikit_learns_macro_f1():
    """On one-hot probabilities the soft Dice of a class is its F1; the loss averages the classes
    present in the image's labels."""
    from sklearn import metrics as sk

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, (2, 6, 6)).astype(np.int32)
    labels[1][labels[1] == 2] = 0   # image 1 has no class 2: it stays out of that image's mean
    predicted = rng.integers(0, 3, (2, 6, 6))
    losses = segmentation.soft_dice_loss(jax.nn.one_hot(predicted, 3), jnp.asarray(labels),
                                         jnp.ones(labels.shape, bool), 3)
    for i in range(2):
        present = np.unique(labels[i])
        f1 = sk.f1_score(labels[i].ravel(), predicted[i].ravel(), labels=present, average="macro")
        assert float(losses[i]) == pytest.approx(1 - f1, rel=1e-6)


def multilevel_features(depth=3, grid=4, width=16, prefix=1, batch=2):
    tokens = jnp.ones((batch, prefix + grid * grid, width))
    states = tuple(tokens * (i + 1) for i in range(depth))
    return {"patches": jnp.ones((batch, grid, grid, width)), "hidden_states": states}


def test_multilevel_decoder_shapes_blocks_and_errors():
    features = multilevel_features()
    for blocks, steps, size in (((0, 1, 2), 0, 16), ((1, 2), 1, 16), ((2,), 0, 4)):
        head = segmentation.SegmentationHead(num_classes=3, upsample_steps=steps, channels=8, blocks=blocks)
        out, variables = jax.jit(head.init_with_output)(jax.random.key(0), features)
        assert out.shape == (2, size, size, 3), blocks
    assert variables["params"]["level_0_proj"]["kernel"].shape == (16, 8)
    # The default blocks: DPT's choice on 12 blocks, every block of a 2-block model.
    default = ml_collections.ConfigDict({"decoder_blocks": ()})
    assert segmentation.decoder_blocks(default, 12) == (2, 5, 8, 11)
    assert segmentation.decoder_blocks(default, 2) == (0, 1)
    with pytest.raises(ValueError, match="config.task.decoder_blocks"):
        segmentation.decoder_blocks(ml_collections.ConfigDict({"decoder_blocks": (3, 1)}), 4)
    with pytest.raises(ValueError, match="config.task.decoder='multilevel'.*last_block"):
        head.init(jax.random.key(0), {"patches": features["patches"]})
    for knobs, key in (({"decoder": "unet"}, "config.task.decoder='unet'"), ({"loss": "focal"}, "config.task.loss"),
                       ({"decoder_blocks": (0,)}, "config.task.decoder_blocks")):
        with pytest.raises(ValueError, match=key):
            make_task(**knobs)


def test_multilevel_decoder_with_ce_dice_trains_and_predicts(tmp_path):
    """A tiny ViT with the multilevel decoder and CE + Dice fits a few shape scenes (the loss drops
    by more than half); its model folder predicts masks at each image's own size."""
    import functools

    import optax

    from deploy_helpers import native_model_folder
    from vitjax import modes
    from vitjax.models.model import Model
    from vitjax.models.vit import ViT, ViTSpec

    task_config = {"name": "segmentation", "plugins": [], "decoder": "multilevel", "loss": "ce+dice",
                   "head_channels": 16}
    task = registry.get_task("segmentation")(ml_collections.ConfigDict(task_config), CLASSES)
    spec = ViTSpec(image_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=4, mlp_dim=64)
    model = Model(ViT(spec), task.make_head(spec))
    rng = np.random.default_rng(0)
    scenes = [shapes_scene(rng, 32) for _ in range(8)]
    images = jnp.asarray(np.stack([s[0] for s in scenes]), jnp.float32) / 127.5 - 1
    batch = {"mask": np.stack([s[1] for s in scenes]).astype(np.int32)}
    params = model.init(jax.random.key(0), images, train=False)["params"]
    assert model.apply({"params": params}, images, train=False).shape == (8, 8, 8, 3)  # 4 x 4 patches, 2 levels
    tx = optax.adam(3e-3)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, state):
        loss, grads = jax.value_and_grad(
            lambda p: task.loss(model.apply({"params": p}, images, train=False), batch)[0])(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    state, losses = tx.init(params), []
    for _ in range(25):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses[::10]

    folder = native_model_folder(tmp_path, task_config, list(CLASSES))
    picture = tmp_path / "scene.png"
    Image.fromarray(scenes[0][0]).resize((40, 36)).save(picture)
    records = modes.predict(None, None, folder, [str(picture)], None, str(tmp_path / "out"))
    assert np.asarray(Image.open(records[0]["mask"])).shape == (36, 40)


def test_random_crop_and_flip_move_image_and_mask_together():
    rng = np.random.default_rng(1)
    image, mask, _ = shapes_scene(rng, size=48)
    record = {"image": image, "mask": Image.fromarray(mask.astype(np.uint8)), "name": "scene"}
    augment = data_default_config().augment
    augment.crop_scale, augment.hflip = (0.3, 1.0), 0.5
    transforms = segmentation.PairTransforms((24, 24), Image.Resampling.NEAREST, augment, 255, False)
    colours = np.array([[110, 110, 110], [230, 40, 40], [40, 220, 60]])
    for seed in range(6):
        example = transforms.train(record, np.random.default_rng(seed))
        nearest = np.argmin(np.abs(example["image"][..., None, :].astype(int) - colours).sum(-1), axis=-1)
        objects = example["mask"] > 0
        assert np.mean(nearest[objects] == example["mask"][objects]) > 0.9
        assert np.mean(nearest[~objects] == 0) > 0.7  # noisy grey background


def test_hf_annotation_column_and_reduce_labels():
    datasets = pytest.importorskip("datasets")
    mask = np.array([[0, 1], [2, 3]], np.uint8).repeat(4, 0).repeat(4, 1)
    image = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    features = datasets.Features({"image": datasets.Image(), "annotation": datasets.Image()})
    dataset = datasets.Dataset.from_dict({"image": [image], "annotation": [Image.fromarray(mask)]}, features=features)
    data_cfg = data_default_config()
    splits = segmentation.from_hf(dataset, data_cfg, make_task().config)
    record = splits["train"][0]
    assert isinstance(record["mask"], dict)  # read undecoded; decoded in the pipeline's workers
    transforms = segmentation.PairTransforms((4, 4), Image.Resampling.BILINEAR, data_cfg.augment, 255, True)
    np.testing.assert_array_equal(transforms.eval(record)["mask"],
                                  [[255, 255, 0, 0]] * 2 + [[1, 1, 2, 2]] * 2)


def test_folder_errors_name_the_problem(tmp_path):
    data = segmentation_folder(str(tmp_path / "data"), count=3)
    os.remove(os.path.join(data, "masks", "001.png"))
    with pytest.raises(ValueError, match="only one of images/ and masks/.*001"):
        segmentation.scan_folder(data)
    with pytest.raises(ValueError, match="class_names"):
        segmentation.class_names_of(str(tmp_path), make_task().config)


def test_classification_only_pipeline_options_are_refused():
    data_cfg = data_default_config()
    data_cfg.cache = "ram"
    transforms = make_task().data_transforms(setup.Preprocessing.default(16), data_cfg)
    with pytest.raises(ValueError, match="config.data.cache"):
        pipeline.eval_batches([], None, batch_size=2, data_cfg=data_cfg, record_transforms=transforms)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("segmentation")
    data = segmentation_folder(str(root / "data"))
    config = dense_config("segmentation", f"folder:{data}", batch_size=16, epochs=6)
    config.task.upsample_steps, config.task.head_channels = 1, 32
    return untrained_then_trained(config, root)


def test_training_raises_miou_well_above_untrained(trained):
    untrained, results, workdir = trained
    test = results["metrics"]["test"]
    assert untrained["mean_iou"] < 0.3
    assert test["mean_iou"] > 0.6 and test["mean_iou"] > untrained["mean_iou"] + 0.4
    assert test["pixel_accuracy"] > 0.9
    report = os.path.join(workdir, "test")
    for name in ("per_class.csv", "per_class.md", "report.json", "confusion_matrix.png"):
        assert os.path.getsize(os.path.join(report, name)) > 0
    assert not os.path.exists(os.path.join(workdir, "best"))  # no transformers class: vitjax's format
    info, params, _, _ = load_native(os.path.join(workdir, "best_vitjax"))
    assert info["task"] == "segmentation" and info["class_names"] == list(CLASSES)
    assert info["task_config"]["upsample_steps"] == 1
    assert params["head"]["classifier"]["kernel"].shape == (32, 3)


def test_evaluate_predict_and_export_modes(trained, tmp_path):
    """The trained run through every later mode, given only its workdir: evaluate reproduces the test
    metrics, predict writes masks at each image's own size that match the true masks, export (with the
    data folder gone) writes a best_vitjax/ that `vitjax.load_trained` runs like the original."""
    import json

    import vitjax
    from vitjax import modes

    _, results, workdir = trained
    summary = modes.evaluate(None, workdir, None, "test")
    assert summary["mean_iou"] == pytest.approx(results["metrics"]["test"]["mean_iou"], abs=1e-6)
    data = json.load(open(os.path.join(workdir, "config.json")))["data"]["source"].removeprefix("folder:")
    images = [os.path.join(data, "images", f"{i:03d}.jpg") for i in range(6)]
    big = tmp_path / "big.png"  # not the training size: the mask follows the image, not the model
    Image.open(images[0]).resize((48, 40), Image.NEAREST).save(big)
    records = modes.predict(None, workdir, None, [*images, str(big)], None, str(tmp_path / "out"))
    assert [r["file"] for r in records] == [*images, str(big)]
    correct = total = 0
    for record, path in zip(records, images):
        mask = np.asarray(Image.open(record["mask"]))
        truth = np.asarray(Image.open(path.replace("images", "masks").replace(".jpg", ".png")))
        assert mask.shape == truth.shape and set(np.unique(mask)) <= {0, 1, 2}
        assert Image.open(record["overlay"]).format == "PNG"  # with its legend: test_report_tasks.py
        assert sum(record["class_pixels"].values()) == mask.size
        correct, total = correct + (mask == truth).sum(), total + mask.size
    assert correct / total > 0.85  # the trained model's pixel accuracy is above 0.9
    assert np.asarray(Image.open(records[-1]["mask"])).shape == (40, 48)
    exported = export_without_data(workdir, data, str(tmp_path / "exported"))
    ours, theirs = vitjax.load_trained(exported), vitjax.load_trained(os.path.join(workdir, "best_vitjax"))
    image = [Image.open(images[0]).convert("RGB")]
    np.testing.assert_array_equal(ours.outputs(image), theirs.outputs(image))
    assert ours.task.class_names == list(CLASSES) and ours.task.config.upsample_steps == 1
