"""A run's folder: every file name of a workdir, in one place, and what vitjax may delete there.

    <workdir>/
      .vitjax-workdir     the marker: written when vitjax creates the workdir; nothing is deleted from
                          a folder without it
      .vitjax.lock        the lock of the run that holds it (`vitjax.workdir_lock`)
      config.json/.txt    the resolved config (read back on resume and by the modes after training)
      data_split.json     the split, audited on resume      model.json   the resolved architecture
      param_groups.txt    the optimizer's parameter groups  metrics.jsonl, tensorboard/   the logs
      checkpoints/        orbax: the best k and the latest   results.json, learning_curves.png
      report.html         the run on one page (`vitjax.report_page`)
      validation/, <test split>/   the finished run's reports     eval_<split>/   --mode evaluate's
      best/ (Hugging Face), best_vitjax/ (vitjax's format), best_adapter/ (LoRA, PEFT format)
      predictions/, robustness/    the modes after training    trackers.json   tracker run ids
      sweep.db, trial_NNN/, trials.csv/.md, sweep.json, best_config.py, param_importances.png  (sweeps)

Every module names these files through `Workdir`; `Workdir.own_files` is the list an `--overwrite`
removes, and only in a folder that carries the marker (or holds a config of an earlier vitjax). A
workdir may be a local folder or a prefix on object storage (`gs://bucket/run`, `s3://bucket/run`):
every file of it is read and written through `vitjax.storage`.
"""

from __future__ import annotations

import json
import os
import re

from vitjax import storage
from vitjax.errors import BadValue

MARKER = ".vitjax-workdir"
LOCK = ".vitjax.lock"
CONFIG, CONFIG_TEXT = "config.json", "config.txt"
SPLIT = "data_split.json"
MODEL = "model.json"
PARAM_GROUPS = "param_groups.txt"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
RESULTS = "results.json"
REPORT_HTML = "report.html"
LEARNING_CURVES = "learning_curves.png"
BEST, BEST_NATIVE, BEST_ADAPTER = "best", "best_vitjax", "best_adapter"
PREDICTIONS = "predictions"
ROBUSTNESS = "robustness"
TRACKERS = "trackers.json"
VALIDATION = "validation"
SWEEP_DB, SWEEP_SUMMARY, TRIALS_CSV, TRIALS_MD = "sweep.db", "sweep.json", "trials.csv", "trials.md"
BEST_CONFIG, IMPORTANCES = "best_config.py", "param_importances.png"
SWEEP_FILES = (SWEEP_DB, SWEEP_SUMMARY, TRIALS_CSV, TRIALS_MD, BEST_CONFIG, IMPORTANCES)
# Names vitjax writes beside those, by pattern: evaluate's reports, a sweep's trials, files written
# beside their target and renamed over it.
_OWN_PATTERNS = re.compile(r"eval_.+|trial_\d+|.+\.tmp")


def adapter_dir(export_dir: str) -> str:
    """Where the PEFT adapter of a LoRA run is written, beside the merged export `export_dir`
    (`best/` -> `best_adapter/`)."""
    return storage.normalize(export_dir).rstrip("/") + "_adapter"


class Workdir:
    """The paths of one workdir. `Workdir(path)` touches nothing; `create` writes the marker."""

    def __init__(self, path: str | os.PathLike):
        self.path = storage.normalize(path)

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"Workdir({self.path!r})"

    def file(self, name: str) -> str:
        return storage.join(self.path, name)

    # ---- the layout ------------------------------------------------------------------------------
    marker = property(lambda self: self.file(MARKER))
    lock = property(lambda self: self.file(LOCK))
    config = property(lambda self: self.file(CONFIG))
    split = property(lambda self: self.file(SPLIT))
    model = property(lambda self: self.file(MODEL))
    param_groups = property(lambda self: self.file(PARAM_GROUPS))
    metrics = property(lambda self: self.file(METRICS))
    tensorboard = property(lambda self: self.file(TENSORBOARD))
    checkpoints = property(lambda self: self.file(CHECKPOINTS))
    results = property(lambda self: self.file(RESULTS))
    report_html = property(lambda self: self.file(REPORT_HTML))
    learning_curves = property(lambda self: self.file(LEARNING_CURVES))
    best = property(lambda self: self.file(BEST))
    best_native = property(lambda self: self.file(BEST_NATIVE))
    predictions = property(lambda self: self.file(PREDICTIONS))
    robustness = property(lambda self: self.file(ROBUSTNESS))
    trackers = property(lambda self: self.file(TRACKERS))

    def report(self, split: str) -> str:
        """Where a finished run writes its report of `split` (validation and the test split)."""
        return self.file(split)

    def evaluation(self, split: str) -> str:
        """Where `--mode evaluate` writes its report of `split`."""
        return self.file(f"eval_{split}")

    def reports(self, test_split: str | None) -> list[str]:
        """The report folders present: the finished run's (validation, the test split), then
        `--mode evaluate`'s."""
        names = ["validation", *([test_split] if test_split else [])]
        names += sorted(name for name in self.foreign_entries() if name.startswith("eval_"))
        return [self.file(name) for name in dict.fromkeys(names) if storage.isdir(self.file(name))]

    def export(self, native: bool) -> str:
        """`best/` (Hugging Face format), or `best_vitjax/` for a task without a transformers class."""
        return self.best_native if native else self.best

    def trial(self, number: int) -> str:
        return self.file(f"trial_{number:03d}")

    # ---- ownership -------------------------------------------------------------------------------
    def is_vitjax(self) -> bool:
        """Whether vitjax created this folder: its marker, or (a workdir of a vitjax from before the
        marker) a config.json that is a vitjax config."""
        if storage.isfile(self.marker):
            return True
        try:
            saved = json.loads(storage.read_text(self.config))
        except (OSError, ValueError):
            return False
        return isinstance(saved, dict) and {"model", "data", "train", "optim", "task"} <= set(saved)

    def foreign_entries(self) -> list[str]:
        """What the folder holds besides vitjax's lock: empty for a new or empty folder."""
        if not storage.isdir(self.path):
            return []
        return sorted(name for name in storage.listdir(self.path) if name != LOCK)

    def check_usable(self, overwrite: bool = False) -> None:
        """Refuses a folder that holds files and is not a vitjax workdir: vitjax writes its run into a
        new or empty folder, or one it created (so it never overwrites or deletes another's files)."""
        entries = self.foreign_entries()
        if entries and not self.is_vitjax():
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            what = ("--overwrite deletes only a workdir vitjax created, and " if overwrite else "")
            raise BadValue(f"{self.path} is not a vitjax workdir (no {MARKER} marker) and is not empty "
                           f"({shown}): {what}vitjax writes a run into a new or empty folder only. Pass "
                           f"another --workdir.")

    def create(self) -> None:
        """Makes the folder (when missing) and marks it as vitjax's."""
        storage.makedirs(self.path)
        if not storage.isfile(self.marker):
            storage.write_text(self.marker, "A vitjax workdir: vitjax may replace the files it wrote here "
                                            "(--overwrite).\n")

    def own_files(self, test_split: str = "test") -> list[str]:
        """The entries of the folder that vitjax wrote (never the marker or the lock)."""
        fixed = {CONFIG, CONFIG_TEXT, SPLIT, MODEL, PARAM_GROUPS, METRICS, TENSORBOARD, CHECKPOINTS,
                 RESULTS, REPORT_HTML, LEARNING_CURVES, BEST, BEST_NATIVE, BEST_ADAPTER, PREDICTIONS,
                 ROBUSTNESS, TRACKERS, VALIDATION, *SWEEP_FILES, *([test_split] if test_split else [])}
        return [name for name in self.foreign_entries()
                if name != MARKER and (name in fixed or _OWN_PATTERNS.fullmatch(name))]

    def clear(self, test_split: str = "test") -> list[str]:
        """Removes vitjax's own files (`own_files`); returns what else the folder holds, kept."""
        if not self.is_vitjax():
            raise BadValue(f"{self.path} is not a vitjax workdir (no {MARKER} marker): nothing in it "
                           f"is deleted.")
        own = self.own_files(test_split)
        for name in own:
            storage.rmtree(self.file(name))
        return [name for name in self.foreign_entries() if name not in own and name != MARKER]
