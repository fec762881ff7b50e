"""`--mode robustness` end to end on a tiny trained run (3 digits of scikit-learn's scans): the
robustness page's command (docs/robustness.md) through the command line, its report files and model
card table, clean accuracy = the run's test accuracy = the attacks at epsilon 0, PGD <= FGSM <= clean, cross-domain classes
matched by name, and the relative mCE against a baseline report."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from train_helpers import digits_folder, tiny_config
from vitjax import modes
from vitjax.robustness.options import default_options

pytest.importorskip("imagecorruptions")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    data = digits_folder(str(root / "data"), (0, 1, 7), per_class=50)
    config = tiny_config(f"folder:{data}", batch_size=8, epochs=4)
    config.model.spec.image_size = 32  # ImageNet-C needs 32 px
    config.model.spec.patch_size = 8
    workdir = str(root / "run")
    results = modes.train(config, workdir)
    other = digits_folder(str(root / "other"), (0, 1, 4), per_class=5)  # no 7, an unknown 4
    return workdir, results, other


@pytest.fixture(scope="module")
def cli_report(trained):
    """The robustness page's command (docs/robustness.md) on the tiny run, a short sweep and a cross-domain source."""
    workdir, _, other = trained
    readme = open(os.path.join(ROOT, "docs", "robustness.md")).read()
    command = re.search(r"^python -m vitjax\.main --mode robustness .*$", readme, re.M).group(0)
    args = command.split()[1:]
    args[args.index("--workdir") + 1] = workdir
    args += ["--robustness.corruptions=('gaussian_noise','glass_blur','fog')",
             "--robustness.severities=(1,5)", "--robustness.epsilons=(0,2,8)",
             "--robustness.pgd_steps=3", f"--robustness.source=folder:{other}"]
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Robustness report" in done.stdout and "| glass_blur" in done.stdout
    return json.load(open(os.path.join(workdir, "robustness", "report.json")))


def test_report_files_and_model_card(trained, cli_report):
    workdir = trained[0]
    out = os.path.join(workdir, "robustness")
    for name in ("report.json", "report.md", "corruption_heatmap.png", "reliability_diagram.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    card = open(os.path.join(workdir, "best", "README.md")).read()
    assert card.count("## Robustness") == 1 and "PGD accuracy, eps 8/255" in card
    assert cli_report["options"]["pgd_steps"] == 3
    assert set(cli_report["corruptions"]) == {"gaussian_noise", "glass_blur", "fog"}
    assert all(set(row) == {"1", "5"} for row in cli_report["corruptions"].values())
    # The run's report page now carries the robustness section: its headline numbers and both plots.
    page = open(os.path.join(workdir, "report.html")).read()
    section = page[page.index('<section id="robustness">'):]
    assert "Robustness (test, accuracy)" in section and "worst_corruption" in section
    assert section.count('src="data:image/png;base64,') == 2


def test_clean_and_attacked_accuracies(trained, cli_report):
    _, results, _ = trained
    clean = cli_report["clean"]["accuracy"]
    assert clean == pytest.approx(results["metrics"]["test"]["accuracy"], abs=1e-6)
    fgsm, pgd = cli_report["attacks"]["fgsm"], cli_report["attacks"]["pgd"]
    assert fgsm["0"] == pytest.approx(clean, abs=1e-6) and pgd["0"] == pytest.approx(clean, abs=1e-6)
    for epsilon in ("2", "8"):
        assert pgd[epsilon] <= fgsm[epsilon] <= clean
    assert fgsm["8"] < clean
    calibration = cli_report["calibration"]
    assert 0 <= calibration["before"]["ece"] <= 1 and calibration["after"]["temperature"] > 0
    assert calibration["after"]["nll"] <= calibration["before"]["nll"] + 0.05


def test_cross_domain_names_missing_classes(cli_report):
    cross = cli_report["cross_domain"]
    assert cross["missing_in_source"] == ["7"] and cross["unknown_to_model"] == ["4"]
    assert cross["images"] == 10  # the 0s and 1s; the 4s are dropped
    assert 0 <= cross["metrics"]["accuracy"] <= 1


def test_baseline_against_itself_gives_mce_one(trained, cli_report, tmp_path):
    workdir = trained[0]
    with pytest.raises(modes.UserError, match="run `python -m vitjax.main --mode robustness"):
        modes.robustness(None, workdir, None, "test", _options(baseline=str(tmp_path)))
    baseline = tmp_path / "baseline"
    shutil.copytree(os.path.join(workdir, "robustness"), baseline / "robustness")
    result = modes.robustness(None, workdir, None, "test", _options(baseline=str(baseline)))
    assert result["baseline"]["mce"] == pytest.approx(1.0)
    assert result["baseline"]["relative_mce"] == pytest.approx(1.0)
    assert "attacks" not in result and "cross_domain" not in result
    card = open(os.path.join(workdir, "best", "README.md")).read()
    assert card.count("## Robustness") == 1  # replaced, not added twice


def _options(**overrides):
    options = default_options()
    options.corruptions = ("gaussian_noise", "glass_blur", "fog")
    options.severities = (1, 5)
    options.epsilons = ()
    options.update(overrides)
    return options
