"""Tests of the task registry: registration, name clashes, typo hints and the three plugin sources."""
import logging
import textwrap
from importlib import metadata

import ml_collections
import pytest

from vitjax import registry

# A complete toy plugin; the registry never calls the task methods, so they are stubbed out.
TOY_PLUGIN = textwrap.dedent('''
    """A toy task plugin written by the registry tests."""
    from vitjax.registry import Task, register_task


    @register_task("{name}")
    class Toy(Task):
        best_metric = ("loss", "min")
        make_head = loss = metrics = metric_inputs = summarize = report = None
''')


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch):
    """Each test sees the built-in tasks only and leaves the global registry as it found it."""
    registry.load_plugins()
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))
    monkeypatch.setattr(registry, "_LOADED_FILES", {})


def toy_class(name="toy"):
    namespace = {}
    exec(TOY_PLUGIN.format(name=name), namespace)
    return namespace["Toy"]


def test_register_and_get():
    cls = toy_class("toy")
    assert registry.get_task("toy") is cls
    assert cls.name == "toy"
    assert "toy" in registry.available_tasks()
    assert "classification" in registry.available_tasks()


def test_name_clash_is_an_error():
    toy_class("toy")
    with pytest.raises(ValueError, match="already registered"):
        toy_class("toy")
    with pytest.raises(ValueError, match="already registered"):
        toy_class("classification")


def test_registering_a_non_task_is_an_error():
    with pytest.raises(TypeError, match="not a vitjax.registry.Task"):
        registry.register_task("bad")(dict)


def test_typo_lists_available_tasks_and_close_matches():
    with pytest.raises(KeyError) as error:
        registry.get_task("clasification")
    message = str(error.value)
    assert "Did you mean 'classification'" in message
    assert "Available tasks: classification" in message
    assert "config.task.plugins" in message


def test_plugin_from_a_file_path(tmp_path):
    path = tmp_path / "my_task.py"
    path.write_text(TOY_PLUGIN.format(name="toy_file"))
    registry.load_plugins([str(path)])
    assert registry.get_task("toy_file").best_metric == ("loss", "min")
    registry.load_plugins([str(path)])  # A second load of the same file is a no-op, not a clash.


def test_plugin_from_a_module_path(tmp_path, monkeypatch):
    (tmp_path / "toy_module_plugin.py").write_text(TOY_PLUGIN.format(name="toy_module"))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.load_plugins(["toy_module_plugin"])
    assert registry.get_task("toy_module").name == "toy_module"


def test_missing_plugins_say_where_they_were_named(tmp_path):
    with pytest.raises(ModuleNotFoundError, match="config.task.plugins"):
        registry.load_plugins(["no_such_vitjax_plugin"])
    with pytest.raises(FileNotFoundError, match="config.task.plugins"):
        registry.load_plugins([str(tmp_path / "absent.py")])


def test_plugin_from_an_entry_point(tmp_path, monkeypatch, caplog):
    (tmp_path / "toy_entry_point_plugin.py").write_text(TOY_PLUGIN.format(name="toy_entry_point"))
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [
        metadata.EntryPoint(name="broken", value="no_such_module_anywhere", group=registry.ENTRY_POINT_GROUP),
        metadata.EntryPoint(name="toy", value="toy_entry_point_plugin", group=registry.ENTRY_POINT_GROUP),
    ]
    groups = []

    def entry_points(group):
        groups.append(group)
        return points

    monkeypatch.setattr(registry.metadata, "entry_points", entry_points)
    with caplog.at_level(logging.WARNING):
        registry.load_plugins()
    assert groups == ["vitjax.tasks"]
    assert registry.get_task("toy_entry_point").name == "toy_entry_point"
    assert "Skipping task plugin entry point 'broken'" in caplog.text


def test_task_config_holds_name_plugins_and_knobs():
    config = registry.task_config("classification")
    assert config.name == "classification"
    assert list(config.plugins) == []
    assert config.label_smoothing == 0.0


def test_unknown_task_knob_lists_close_matches():
    config = ml_collections.ConfigDict({"name": "classification", "label_smothing": 0.1})
    with pytest.raises(KeyError, match="Did you mean label_smoothing"):
        registry.get_task("classification")(config, ["a", "b"])


def test_missing_knobs_take_the_defaults():
    task = registry.get_task("classification")(ml_collections.ConfigDict({"top_k": 3}), ["a", "b"])
    assert task.config.top_k == 3
    assert task.config.label_smoothing == 0.0


def test_a_task_without_classes_says_so_and_gets_no_class_warnings(caplog):
    """A regression-like task: `has_classes = False`, its source passes class_names=None, its records'
    labels are only strata; no class checks, no "split has no images of class X" warnings."""
    import numpy as np

    from vitjax.data.config import default_config
    from vitjax.data.records import ArraySource
    from vitjax.data.splits import resolve_splits

    @registry.register_task("no_classes")
    class NoClasses(registry.Task):
        has_classes = False
        best_metric = ("loss", "min")
        make_head = loss = metrics = metric_inputs = summarize = report = None

    strata = np.repeat(np.arange(5), 8)  # e.g. binned targets, far more strata than "classes"
    images = np.zeros((len(strata), 4, 4, 3), np.uint8)
    with caplog.at_level("WARNING"):
        dataset = resolve_splits("toy", {"train": ArraySource("toy", images, strata)}, None, default_config())
    assert dataset.class_names == [] and sum(len(s) for s in dataset.splits.values()) == 40
    assert not [r for r in caplog.records if "no images of the classes" in r.getMessage()]
    assert NoClasses(registry.ml_collections.ConfigDict(), dataset.class_names).class_names == []
    with pytest.raises(ValueError, match="needs at least one class name.*has_classes = False"):
        registry.get_task("classification")(registry.task_config("classification"), [])
    with caplog.at_level("WARNING"):  # the same records with one class name do warn: the check is live
        resolve_splits("toy", {"train": ArraySource("toy", images, np.zeros_like(strata))}, ["a", "b"],
                       default_config())
    assert [r for r in caplog.records if "no images of the classes" in r.getMessage()]


WORKER_PLUGIN = textwrap.dedent('''
    """A plugin file whose record transforms grain's worker processes must unpickle."""
    import dataclasses

    import numpy as np

    from vitjax.data.pipeline import RecordTransforms
    from vitjax.registry import Task, register_task


    @dataclasses.dataclass(frozen=True)
    class Brightness:
        def train(self, record, rng):
            return {"image": np.full((4, 4, 3), record["label"], np.uint8),
                    "target": np.float32(record["label"])}

        def eval(self, record):
            return self.train(record, None)


    @register_task("worker_toy")
    class WorkerToy(Task):
        best_metric = ("loss", "min")
        has_classes = False
        make_head = loss = metrics = metric_inputs = summarize = report = None

        def data_transforms(self, preprocessing, data_cfg):
            pad = {"image": np.zeros((4, 4, 3), np.uint8), "target": np.float32(0)}
            return RecordTransforms(train=Brightness().train, eval=Brightness().eval, padding=pad)
''')


def test_plugin_file_transforms_reach_data_worker_processes(tmp_path):
    """A plugin named by file path, its transforms pickled into 2 grain worker processes (the default
    config.data.workers): the workers import the same file by its stable module name."""
    import ml_collections
    import numpy as np

    from vitjax.checkpoints.preprocessing import Preprocessing
    from vitjax.data import pipeline
    from vitjax.data.config import default_config
    from vitjax.data.records import ArraySource

    path = tmp_path / "worker toy.py"  # a space: any file name works
    path.write_text(WORKER_PLUGIN)
    registry.load_plugins([str(path)])
    task_class = registry.get_task("worker_toy")
    assert task_class.__module__.startswith("vitjax.plugin_files.")
    transforms = task_class(ml_collections.ConfigDict(), []).data_transforms(None, None)
    data_cfg = default_config()
    data_cfg.workers = 2
    split = ArraySource("toy", np.zeros((8, 4, 4, 3), np.uint8), np.arange(8))
    iterator = pipeline.train_iterator(split, Preprocessing.default(4), data_cfg, batch_size=4, seed=0,
                                       record_transforms=transforms)
    batches = [next(iterator) for _ in range(4)]
    targets = np.concatenate([batch["target"] for batch in batches])
    assert sorted(targets.tolist()) == sorted(list(range(8)) * 2)
    assert all((batch["image"][:, 0, 0, 0] == batch["target"]).all() for batch in batches)
