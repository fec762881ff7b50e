"""A third-party task plugin, given by file path, through every mode of the command line: trained with
two data worker processes, then evaluated, used to predict and exported with only `--workdir` (the
later modes read the run's saved config), and the export loaded back by `vitjax.load_trained`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from train_helpers import colour_folder

PLUGIN = textwrap.dedent('''
    """A "colour_index" task: the class index of an image-folder record, regressed as one number."""
    import flax.linen as nn
    import jax.numpy as jnp
    from clu import metrics as clu_metrics

    from vitjax.registry import Task, register_task
    from vitjax.report import write_evaluation_report


    class IndexHead(nn.Module):
        @nn.compact
        def __call__(self, features):
            return nn.Dense(1, name="regressor")(features["cls"])[:, 0].astype(jnp.float32)


    @register_task("colour_index")
    class ColourIndex(Task):
        best_metric = ("mae", "min")

        def make_head(self, spec):
            return IndexHead()

        def loss(self, outputs, batch):
            error = outputs - batch["label"].astype(jnp.float32)
            valid = batch.get("valid", jnp.ones(error.shape, bool))
            aux = {"loss": error ** 2, "abs_error": jnp.abs(error), "mask": valid}
            return jnp.sum(jnp.where(valid, error ** 2, 0.0)) / jnp.maximum(valid.sum(), 1), aux

        def metrics(self, training=False):
            return clu_metrics.Collection.create(loss=clu_metrics.Average.from_output("loss"),
                                                 mae=clu_metrics.Average.from_output("abs_error"))

        def metric_inputs(self, outputs, batch, aux):
            return aux

        def summarize(self, computed):
            return {"loss": float(computed["loss"]), "mae": float(computed["mae"])}

        def report(self, computed, outdir, split):
            summary = self.summarize(computed)
            result = {"split": split, "task": self.name, "metrics": summary}
            write_evaluation_report(outdir, split, summary, [summary], result)
            return result

        def predict(self, outputs, top_k):
            return {"index": outputs}

        def prediction_records(self, predictions, images, names, outdir):
            return [{"index": float(value)} for value in predictions["index"]]
''')

CONFIG = textwrap.dedent('''
    from vitjax import config as config_lib


    def get_config():
        c = config_lib.base_config("colour_index", plugins=[{plugin!r}])
        c.model.spec = dict(image_size=16, patch_size=4, hidden_size=32, num_layers=2, num_heads=2,
                            mlp_dim=64)
        c.model.dtype = "float32"
        c.data.source = "folder:{data}"
        c.data.workers = 2
        c.data.augment.hflip = 0.0
        c.optim.lr = 3e-3
        c.train.batch_size = 8
        c.train.epochs = 6
        c.train.eval_every = "2 epochs"
        c.train.progress = False
        c.compilation_cache = ""
        return c
''')


def vitjax_main(*args: str, cwd) -> str:
    """`python -m vitjax.main ARGS`; returns stdout, fails the test with stderr on a non-zero exit."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-m", "vitjax.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_plugin_file_through_train_evaluate_predict_and_export(tmp_path):
    import vitjax

    data = colour_folder(str(tmp_path / "data"), per_class=16, size=16)  # blue=0, green=1, red=2
    plugin = tmp_path / "colour_index.py"
    plugin.write_text(PLUGIN)
    (tmp_path / "config.py").write_text(CONFIG.format(plugin=str(plugin), data=data))
    vitjax_main("--config", "config.py", "--workdir", "run", cwd=tmp_path)
    run = tmp_path / "run"
    assert json.load(open(run / "data_split.json"))["class_names"] == ["blue", "green", "red"]
    assert (run / "best_vitjax" / "vitjax_model.json").is_file() and not (run / "best").exists()

    printed = vitjax_main("--mode", "evaluate", "--workdir", "run", "--split", "test", cwd=tmp_path)
    report = json.load(open(run / "eval_test" / "report.json"))
    results = json.load(open(run / "results.json"))
    assert abs(report["metrics"]["mae"] - results["metrics"]["test"]["mae"]) < 1e-5
    assert "test mae" in printed and "report (per class, and the task's files) is in run/eval_test" in printed
    # A plugin without `report_sections` still gets the report page's common parts.
    page = (run / "report.html").read_text()
    for part in ("Summary", "Learning curves", '<section id="test">', '<section id="eval_test">',
                 f"{results['metrics']['test']['mae']:.4f}"):
        assert part in page, part
    assert "gallery" not in page.split("</style>")[1]

    vitjax_main("--mode", "predict", "--workdir", "run", "--inputs", f"{data}/red,{data}/blue",
                "--output", "preds", cwd=tmp_path)
    records = json.load(open(tmp_path / "preds" / "predictions.json"))
    assert len(records) == 32 and all(isinstance(r["index"], float) for r in records)
    red = np.mean([r["index"] for r in records if "/red/" in r["file"]])
    blue = np.mean([r["index"] for r in records if "/blue/" in r["file"]])
    assert red - blue > 1.0  # the trained model tells the colours apart (targets 2 and 0)

    os.rename(data, data + ".hidden")  # export needs no training images
    vitjax_main("--mode", "export", "--workdir", "run", "--output", "exported", cwd=tmp_path)
    os.rename(data + ".hidden", data)
    predictor = vitjax.load_trained(tmp_path / "exported")
    assert predictor.task.name == "colour_index"
    again = predictor.predict([records[0]["file"]], str(tmp_path / "again"))
    np.testing.assert_allclose(again[0]["index"], records[0]["index"], rtol=1e-5, atol=1e-5)
