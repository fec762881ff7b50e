"""The run's report page, `<workdir>/report.html` (issue 23, item 1), as a user opens it: from disk,
with nothing fetched. A tiny digits run that still makes mistakes; its gallery must list exactly the
test images the exported model gets wrong when it predicts each file itself (`TrainedModel.predict`,
not the evaluation pipeline), most confident first; `--mode evaluate` refreshes the page. With
Debian's chromium, the page is opened in headless Chromium (skipped with a message without it, a
failure under CI) with no request but file:// and data: (Chrome DevTools' Network events). Every PNG
the run writes has labelled axes (`figure_checks`). Screenshots go to $VITJAX_TEST_ARTIFACTS
(default: <tmp>/vitjax-test-artifacts).
"""
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from figure_checks import assert_every_png_labelled, recorded_figures
from train_helpers import digits_folder, tiny_config
from vitjax import modes
from vitjax.explain import GALLERY_EXPLAINED
from vitjax.trained import load_trained


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_page")
    data = digits_folder(str(root / "digits"), classes=range(6), per_class=30)
    workdir = str(root / "run")
    config = tiny_config(f"folder:{data}", epochs=2, batch_size=16)
    config.optim.lr = 1e-3
    with recorded_figures() as saved:
        results = modes.train(config, workdir)
    return workdir, data, results, saved


def test_every_png_of_the_run_is_labelled(run):
    workdir, _, _, saved = run
    checked = assert_every_png_labelled(workdir, saved)
    assert {os.path.relpath(png, workdir) for png in checked} >= {
        "learning_curves.png", "validation/confusion_matrix.png", "test/confusion_matrix.png"}


class _Gallery(HTMLParser):
    """The figures of each section's galleries: {(section id, heading): [[file name, caption text...]]},
    and every src/href."""

    def __init__(self):
        super().__init__()
        self.figures, self.links, self._section, self._in, self._heading = {}, [], None, None, None
        self._key = (None, "")

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag == "section":
            self._section = attrs["id"]
        elif tag == "h3":
            self._heading = ""
        elif tag == "figure":
            self._in = []
            self.figures.setdefault(self._key, []).append(self._in)

    def handle_endtag(self, tag):
        if tag == "figure":
            self._in = None
        elif tag == "h3":
            self._key, self._heading = (self._section, self._heading), None

    def handle_data(self, data):
        if self._in is not None:
            self._in.append(data)
        elif self._heading is not None:
            self._heading += data

    def mistakes(self, section):
        return next(shown for (where, heading), shown in self.figures.items()
                    if where == section and heading.startswith("Mistakes"))


def _page(workdir):
    text = Path(workdir, "report.html").read_text()
    parsed = _Gallery()
    parsed.feed(text)
    return text, parsed


def _independent_mistakes(workdir, data):
    """The test files the exported model gets wrong, predicting each file itself: {file: probability}."""
    split = json.load(open(os.path.join(workdir, "data_split.json")))["splits"]["test"]
    paths = [os.path.join(data, name) for name in split["ids"]]
    records = load_trained(workdir).predict(paths, os.path.join(workdir, "check_predictions"), top_k=1)
    return {os.path.relpath(r["file"], data): r["probability"] for r in records
            if r["label"] != os.path.basename(os.path.dirname(r["file"]))}


def test_the_page_holds_the_run_and_its_test_mistakes(run):
    workdir, data, results, _ = run
    text, page = _page(workdir)
    # Self-contained: every src/href is inline data or an in-page anchor; no script, no stylesheet link.
    assert page.links and all(link.startswith(("data:image/png;base64,", "#")) for link in page.links)
    assert not re.search(r"(src|href)=\"?(https?:)?//", text) and "<script" not in text and "<link" not in text
    # The summary and metrics, from the run's own files.
    split = json.load(open(os.path.join(workdir, "data_split.json")))
    for shown in (f"folder:{data}", "scratch", f"test {split['splits']['test']['size']}",
                  "2 epochs, batch 16", f"{results['best_step']} (epoch", "Learning curves",
                  f"{results['metrics']['test']['accuracy']:.4f}", "Confusion matrix", "Per class"):
        assert shown in text, shown
    # The gallery: exactly the files the model gets wrong, most confident first.
    expected = _independent_mistakes(workdir, data)
    report = json.load(open(os.path.join(workdir, "test", "report.json")))
    matrix = report["confusion_matrix"]
    assert len(expected) == sum(sum(row) for row in matrix) - sum(matrix[i][i] for i in range(len(matrix)))
    assert 0 < len(expected) < split["splits"]["test"]["size"], "the tiny run should make some mistakes"
    shown = page.mistakes("test")
    assert f"Mistakes ({len(expected)})" in text
    assert sorted(parts[0] for parts in shown) == sorted(expected)
    probabilities = [float(re.search(r"\(([\d.]+)%\)", "".join(parts)).group(1)) for parts in shown]
    assert probabilities == sorted(probabilities, reverse=True)
    for parts, probability in zip(shown, probabilities):
        assert probability == pytest.approx(100 * expected[parts[0]], abs=0.06)
        true = os.path.basename(os.path.dirname(parts[0]))
        assert f"true: {true}" in "".join(parts)
    assert text.count("<img") >= len(shown) + 3  # thumbnails, curves, two confusion matrices
    # The most-confused pair of classes, with its images.
    pairs = {}
    for name in expected:
        pairs.setdefault(os.path.basename(os.path.dirname(name)), []).append(name)
    confused = [(heading, shown) for (where, heading), shown in page.figures.items()
                if where == "test" and heading.startswith("Confused: ")]
    assert confused and all(0 < len(shown) <= 6 for _, shown in confused)
    counts = [int(heading.rsplit("(", 1)[1][:-1]) for heading, _ in confused]
    assert counts == sorted(counts, reverse=True) and sum(counts) <= len(expected)


def test_evaluate_refreshes_the_page(run):
    workdir, data, _, _ = run
    before = os.path.getmtime(os.path.join(workdir, "report.html"))
    with recorded_figures() as saved:
        modes.evaluate(None, workdir, None, "test")
    run[3].update(saved)  # its eval_test/ plots, for test_every_png_of_the_run_is_labelled
    text, page = _page(workdir)
    assert os.path.getmtime(os.path.join(workdir, "report.html")) >= before
    assert "evaluate: test" in text
    assert [p[0] for p in page.mistakes("eval_test")] == [p[0] for p in page.mistakes("test")]
    # Beside the first mistakes, what the evaluated model looks at in them (vitjax.explain).
    explained = min(len(page.mistakes("eval_test")), GALLERY_EXPLAINED)
    section = text[text.index('<section id="eval_test">'):]
    assert section[:section.index("</section>")].count('<img class="extra" alt="explain/') >= explained > 0
    assert len(os.listdir(os.path.join(workdir, "eval_test", "explain"))) >= explained


@pytest.fixture
def driver():
    from browser_helpers import browser

    opened = browser()
    yield opened
    opened.quit()
    shutil.rmtree(opened.profile, ignore_errors=True)


def test_the_page_renders_from_disk_in_a_browser(run, driver, capsys):
    from selenium.webdriver.common.by import By

    from browser_helpers import full_screenshot, requested

    workdir, data, _, _ = run
    requested(driver)  # what Chromium's own pages sent at start
    url = Path(workdir, "report.html").resolve().as_uri()
    driver.get(url)
    figures = driver.find_elements(By.CSS_SELECTOR, "#test .gallery")[0].find_elements(By.TAG_NAME, "figure")
    heading = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#test h3") if h.text.startswith("Mistakes")]
    assert heading == [f"Mistakes ({len(figures)})"] and figures
    assert len(figures) == len(_independent_mistakes(workdir, data))
    # Every image decoded (a broken data URI has naturalWidth 0), nothing fetched but the page's own.
    widths = driver.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")
    assert widths and all(w > 0 for w in widths)
    sent = [(u, page) for u, page in requested(driver) if not page.startswith("chrome://")]
    assert any(page == url for _, page in sent), sent
    assert all(u.startswith(("file://", "data:")) for u, _ in sent), sent
    screenshot = full_screenshot(driver, "report_page.png")
    with capsys.disabled():
        print(f"\nscreenshot of the report page: {screenshot}")
