"""The report page's task sections (issue 23) on tiny multi-label, segmentation and detection runs,
one run per task: the multi-label gallery lists exactly the test images whose label set the exported
model gets wrong (predicting each file itself); segmentation's overlays leave the background untinted
and name the classes in a legend (the same picture as predict's *_overlay.png); detection draws true
and predicted boxes with a legend. Every PNG each run writes (the robustness report's too) is
checked as matplotlib saves it for labelled axes or a legend (`figure_checks`). Each page opens in
headless Chromium from disk with no request but file:// and data: (Chrome DevTools' Network events),
and a full-page screenshot is kept under $VITJAX_TEST_ARTIFACTS (a failure under CI without chromium).
"""
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from dense_helpers import coco_folder, dense_config, segmentation_folder
from figure_checks import assert_every_png_labelled, legend_texts, recorded_figures
from test_report_page import _page
from train_helpers import csv_folder, tiny_config
from vitjax import modes


@pytest.fixture(scope="module")
def multilabel(tmp_path_factory):
    """A 2-epoch multi-label run at 32 px (ImageNet-C's least) on red/blue halves with a quarter of the
    blue labels wrong, then `--mode robustness` on it (one
    corruption, two attack budgets, calibration): its heat map and reliability diagram."""
    from vitjax.robustness.options import default_options

    root = tmp_path_factory.mktemp("report_multilabel")
    data = csv_folder(str(root / "data"), count=96, size=32)
    lines = open(os.path.join(data, "labels.csv")).read().splitlines()
    for i in range(1, len(lines), 4):  # a wrong "blue" on every fourth image: mistakes a model must make
        name, labels = lines[i].split(",")
        labels = set(filter(None, labels.split(";"))) ^ {"blue"}
        lines[i] = f"{name},{';'.join(sorted(labels))}"
    open(os.path.join(data, "labels.csv"), "w").write("\n".join(lines) + "\n")
    config = tiny_config(f"folder:{data}", batch_size=16, epochs=2)
    config.task.multilabel = True
    config.model.spec.image_size, config.model.spec.patch_size = 32, 8
    workdir = str(root / "run")
    options = default_options()
    options.corruptions, options.severities, options.epsilons, options.pgd_steps = ("gaussian_noise",), (1,), (0, 2), 2
    with recorded_figures() as saved:
        results = modes.train(config, workdir)
        modes.robustness(None, workdir, None, "test", options)
    return workdir, data, results, saved


@pytest.fixture(scope="module")
def segmentation(tmp_path_factory):
    """A 2-epoch segmentation run on shapes (classes.txt: background, red, green), and predict's
    overlays of two images."""
    root = tmp_path_factory.mktemp("report_segmentation")
    data = segmentation_folder(str(root / "data"), count=48)
    workdir = str(root / "run")
    images = [os.path.join(data, "images", f"{i:03d}.jpg") for i in range(2)]
    with recorded_figures() as saved:
        results = modes.train(dense_config("segmentation", f"folder:{data}", batch_size=16, epochs=2), workdir)
        records = modes.predict(None, workdir, None, images, None, os.path.join(workdir, "predictions"))
    return workdir, results, saved, records


@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_detection")
    data = coco_folder(str(root / "data"), count=48)
    config = dense_config("detection", f"coco:{data}", batch_size=16, epochs=2)
    config.task.score_threshold = 0.05  # a 2-epoch model's scores are low: draw some predicted boxes
    workdir = str(root / "run")
    images = [os.path.join(data, f"{i:03d}.png") for i in range(2)]
    with recorded_figures() as saved:
        results = modes.train(config, workdir)
        records = modes.predict(None, workdir, None, images, None, os.path.join(workdir, "predictions"))
    return workdir, results, saved, records


RUNS = ("multilabel", "segmentation", "detection")


@pytest.mark.parametrize("task", RUNS)
def test_every_png_of_the_run_is_labelled(task, request):
    workdir, saved = request.getfixturevalue(task)[0], request.getfixturevalue(task)[-2 if task != "multilabel" else -1]
    checked = assert_every_png_labelled(workdir, saved, data_files=("_mask.png",))
    names = {os.path.relpath(png, workdir) for png in checked}
    expected = {"learning_curves.png", "validation/confusion_matrix.png" if task == "segmentation" else None,
                "test/samples.png" if task != "multilabel" else "robustness/reliability_diagram.png",
                "robustness/corruption_heatmap.png" if task == "multilabel" else None,
                {"segmentation": "predictions/000_overlay.png", "detection": "predictions/000_boxes.png"}.get(task)} - {None}
    assert expected <= names, sorted(names)


def _test_files(workdir):
    return json.load(open(os.path.join(workdir, "data_split.json")))["splits"]["test"]["ids"]


def _independent_mistakes(workdir, data):
    """{file name: predicted label set} of the test images the exported model gets wrong, each
    predicted from its file, the truth read from labels.csv."""
    from vitjax.trained import load_trained

    truth = {}
    for line in open(os.path.join(data, "labels.csv")).read().splitlines()[1:]:
        name, labels = line.split(",")
        truth[name] = sorted(filter(None, labels.split(";")))
    paths = [os.path.join(data, os.path.basename(name)) for name in _test_files(workdir)]
    records = load_trained(workdir).predict(paths, os.path.join(workdir, "check_predictions"), top_k=2)
    return {os.path.basename(r["file"]): sorted(r["labels"]) for r in records
            if sorted(r["labels"]) != truth[os.path.basename(r["file"])]}


def test_multilabel_gallery_lists_exactly_the_wrong_label_sets(multilabel):
    workdir, data, results, _ = multilabel
    text, page = _page(workdir)
    expected = _independent_mistakes(workdir, data)
    size = len(_test_files(workdir))
    assert 0 < len(expected) < size, "the tiny run should get some label sets wrong"
    assert len(expected) == round((1 - results["metrics"]["test"]["accuracy"]) * size)  # exact match
    shown = page.mistakes("test")
    assert f"Mistakes ({len(expected)})" in text
    assert sorted(os.path.basename(parts[0]) for parts in shown) == sorted(expected)
    for parts in shown:
        caption = "".join(parts[1:])
        predicted = re.search(r"predicted: (.*)", caption).group(1)
        names = [] if predicted == "(none)" else [p.split(" (")[0] for p in predicted.split(", ")]
        assert sorted(names) == expected[os.path.basename(parts[0])], caption
    wrong = [int(re.search(r"wrong labels: (\d)", "".join(parts)).group(1)) for parts in shown]
    assert wrong == sorted(wrong, reverse=True)  # the worst first
    for part in ("average_precision", "micro avg", "Robustness", "reliability_diagram.png"):
        assert part in text, part


def test_segmentation_overlays_leave_the_background_untinted(segmentation):
    from vitjax.registry import get_task
    from vitjax.trained import load_trained

    workdir, results, saved, records = segmentation
    text, _ = _page(workdir)
    assert f"Samples ({min(6, len(_test_files(workdir)))})" in text
    assert "background is left untinted" in text and "iou" in text
    for figure in (os.path.join(workdir, "test", "samples.png"), records[0]["overlay"]):
        legend = legend_texts(saved[figure])
        assert "background (untinted)" in legend and set(legend) - {"background (untinted)"} <= {"red", "green"}
    assert set(legend_texts(saved[os.path.join(workdir, "test", "samples.png")])) >= {"red", "green"}
    task = load_trained(workdir).task
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    mask = rng.integers(0, 3, (8, 8))
    mask[0, 0] = 255  # an ignored pixel
    drawn = task.overlay(image, mask)
    untouched = (mask == 0) | (mask == 255)
    np.testing.assert_array_equal(drawn[untouched], image[untouched])
    assert (drawn[~untouched] != image[~untouched]).any(axis=-1).mean() > 0.9
    config = get_task("segmentation").default_config()
    config.background = None
    assert (get_task("segmentation")(config, task.class_names).overlay(image, mask)[mask == 0] != image[mask == 0]).any()


def test_detection_samples_draw_true_and_predicted_boxes(detection):
    workdir, _, saved, records = detection
    text, _ = _page(workdir)
    assert f"Samples ({min(6, len(_test_files(workdir)))})" in text and "ap50" in text
    figure = saved[os.path.join(workdir, "test", "samples.png")]
    legend = legend_texts(figure)
    assert legend[:2] == ["true box", "predicted box (score)"] and set(legend[2:]) <= {"red", "green"}
    solid = [p for ax in figure.axes for p in ax.patches if p.get_linestyle() == "-"]
    dashed = [p for ax in figure.axes for p in ax.patches if p.get_linestyle() == "--"]
    assert dashed and solid  # true boxes and (over the lowered threshold) predicted ones
    labels = {t.get_text().split(" ")[0] for ax in figure.axes for t in ax.texts}
    assert labels <= {"red", "green"} and labels
    for record in records:  # predict's drawing: the same picture, its detections only
        drawn = saved[record["drawn"]]
        boxes = [p.get_bbox().bounds for p in drawn.axes[0].patches]
        expected = [(x0 - 0.5, y0 - 0.5, x1 - x0, y1 - y0) for x0, y0, x1, y1 in (d["box"] for d in record["detections"])]
        np.testing.assert_allclose(boxes, expected, atol=0.02)
        texts = [t.get_text() for t in drawn.axes[0].texts]
        assert texts == [f"{d['label']} {d['score']:.2f}" for d in record["detections"]] and texts
        assert legend_texts(drawn)[0] == "predicted box (score)"


@pytest.fixture(scope="module")
def driver():
    from browser_helpers import browser

    opened = browser()
    yield opened
    opened.quit()
    shutil.rmtree(opened.profile, ignore_errors=True)


@pytest.mark.parametrize("task", RUNS)
def test_the_page_opens_from_disk_with_no_request(task, request, driver, capsys):
    from selenium.webdriver.common.by import By

    from browser_helpers import full_screenshot, requested

    workdir = request.getfixturevalue(task)[0]
    requested(driver)  # drop what earlier pages sent
    url = Path(workdir, "report.html").resolve().as_uri()
    driver.get(url)
    sent = [(u, page) for u, page in requested(driver) if not page.startswith("chrome://")]
    assert any(page == url for _, page in sent), sent  # its images: the log sees the page
    assert all(u.startswith(("file://", "data:")) for u, _ in sent), sent
    widths = driver.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
    assert widths and all(w > 0 for w in widths)
    headings = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#test h3")]
    if task == "multilabel":
        figures = driver.find_elements(By.CSS_SELECTOR, "#test .gallery figure")
        assert [h for h in headings if h.startswith("Mistakes")] == [f"Mistakes ({len(figures)})"] and figures
    else:
        assert f"Samples ({min(6, len(_test_files(workdir)))})" in headings
    screenshot = full_screenshot(driver, f"report_page_{task}.png")
    with capsys.disabled():
        print(f"\nscreenshot of the {task} report page: {screenshot}")


def test_a_gallery_entry_may_carry_an_image_of_its_own(tmp_path):
    """A plugin's gallery entry with "image" (a PNG its report wrote, e.g. where the model looked)
    shows it beside the record's thumbnail; the page inlines it."""
    import base64

    from PIL import Image

    from vitjax import report_page
    from vitjax.workdir import Workdir

    class Records(list):
        def ids(self):
            return [f"img{i}.png" for i in range(len(self))]

        def describe(self, index):
            return self.ids()[index]

    class Plugin:
        def report_sections(self, report):
            return [{"title": "Looked at", "gallery": [{"index": 1, "caption": "why", "image": "map_1.png"}]}]

    class Dataset:
        splits = {"test": Records([{"image": np.zeros((8, 8, 3), np.uint8)}] * 2)}

    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "report.json").write_text(json.dumps({"split": "test", "metrics": {"loss": 1.0}}))
    Image.new("RGB", (5, 3), (200, 0, 0)).save(tmp_path / "test" / "map_1.png")
    report_page.write(Workdir(tmp_path), Plugin(), Dataset(), "test")
    text, page = _page(str(tmp_path))
    encoded = base64.b64encode((tmp_path / "test" / "map_1.png").read_bytes()).decode()
    figure = text[text.index('<figure data-index="1">'):text.index("</figure>")]
    assert figure.count("<img") == 2 and f'class="extra" alt="map_1.png" src="data:image/png;base64,{encoded}"' in figure
    assert page.figures[("test", "Looked at")] == [["img1.png", "\nwhy"]]
