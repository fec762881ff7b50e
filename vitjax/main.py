"""vitjax: fine-tune Vision Transformers in JAX, then evaluate, predict, export and serve them.

    python -m vitjax.main --config configs/digits.py --workdir runs/digits
    python -m vitjax.main --config configs/beans.py --config.optim.lr=3e-5 --workdir runs/beans
    python -m vitjax.main --mode evaluate --workdir runs/beans --split test
    python -m vitjax.main --mode predict --workdir runs/beans --inputs photos/ --top_k 3 --explain
    python -m vitjax.main --mode export --workdir runs/beans --output model/
    python -m vitjax.main --mode export --workdir runs/beans --format onnx --output deploy/
    vitjax serve --model deploy/        (or: python -m vitjax.serve --model deploy/)
    python -m vitjax.main --mode robustness --workdir runs/digits
    python -m vitjax.main --mode sweep --config configs/digits_sweep.py --workdir runs/digits_sweep

Modes after train read the workdir's saved config.json unless --config is given.
"""
# (This module is the command line's flags and mode dispatch, nothing else; its docstring is --help.)

from __future__ import annotations

import logging
import os
import re
import sys

from absl import app, flags
from ml_collections import config_flags

from vitjax.robustness.options import default_options

_CONFIG = config_flags.DEFINE_config_file("config", None, "A python config file with get_config().")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, logs, outputs.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "evaluate", "predict", "export", "robustness",
                                          "sweep"],
                          "What to do.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Start afresh in a workdir that holds another run: removes the files "
                               "vitjax wrote there (only in a folder vitjax created).")
_SPLIT = flags.DEFINE_string("split", "test", "evaluate/robustness: the data split to evaluate.")
_MODEL = flags.DEFINE_string("model", None, "evaluate/predict/robustness: an exported model folder "
                             "(default: <workdir>/best, else <workdir>/best_vitjax).")
_INPUTS = flags.DEFINE_list("inputs", [], "predict: image files and/or folders. The exit status is 1 "
                            "when some could not be read (each has an \"error\" in predictions.json; "
                            "the others are predicted).")
_TOP_K = flags.DEFINE_integer("top_k", None, "predict: ranked entries per image (1 to 100): labels "
                              "(classification), detections; default: the task's, as the service's "
                              "(classification: config.task.top_k).")
_EXPLAIN = flags.DEFINE_bool("explain", False, "predict: also write per image <name>_explain.png, what the "
                             "model looks at for its top class (attention rollout, integrated gradients), "
                             "named by the record's \"explanation\"; tasks with class logits only.")
_SWEEP_STORAGE = flags.DEFINE_string("sweep_storage", None, "sweep: an Optuna storage URL shared by "
                                     "several machines (default: sqlite <workdir>/sweep.db).")
_OUTPUT = flags.DEFINE_string("output", None, "export: target folder; predict: folder for "
                              "predictions.json and the task's files (default <workdir>/predictions).")
_FORMAT = flags.DEFINE_enum("format", "hf", ["hf", "onnx", "onnx-int8", "onnx-int8-static", "stablehlo"],
                            "export: hf = the best checkpoint in Hugging Face / vitjax format; onnx, "
                            "onnx-int8 (dynamic), onnx-int8-static (full integer), stablehlo = a deployable "
                            "model of <workdir>/best (or --model).")
_CALIBRATION = flags.DEFINE_integer("calibration", 256, "export --format onnx-int8-static: the training "
                                    "images of --workdir's run that calibrate the activations' int8 scales.")
_ROBUSTNESS = config_flags.DEFINE_config_dict("robustness", default_options(),
                                              "robustness: the report's knobs (vitjax/robustness/options.py).")


def _parse_flags(argv):
    """absl flag parsing with a one-line, actionable message for a mistyped config key."""
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:
        sys.exit(f"vitjax: {_unknown_override(argv, e)}")
    except flags.Error as e:
        sys.exit(f"vitjax: {_without_traceback(str(e))}\nRun with --helpshort to see the flags.")


def _unknown_override(argv, error: Exception) -> str:
    """An override of a key the config lacks, named with the keys it may have meant."""
    from vitjax import config as config_lib

    while error.args and isinstance(error.args[0], Exception):  # AttributeError(KeyError(...))
        error = error.args[0]
    text = str(error.args[0]) if error.args else str(error)
    key = text.splitlines()[0].strip().strip("'\"") if text.strip() else ""
    overrides = [a.split("=", 1)[0].lstrip("-") for a in argv if a.startswith("--config.")]
    flag = next((o for o in overrides if o.split(".")[-1] == key or f".{key}." in o + "."), None)
    if flag is None:
        return f"config override error: {' '.join(text.split())}"
    *group, _ = flag.split(".")[1:]
    reference = config_lib.base_config()
    try:
        for part in group:
            reference = reference[part]
        known = sorted(reference.keys())
    except (KeyError, AttributeError):
        return f"--{flag}: config.{'.'.join(group)} is not a group of keys."
    where = ".".join(["config", *group])
    return (f"--{flag}: {where} has no key {key!r}.{config_lib.close_matches(key, known)} "
            f"Known keys under {where}: {known}")


def _without_traceback(message: str) -> str:
    """An error raised inside a config file, which absl reports with the whole traceback, as one
    line: absl's heading, the innermost frame outside ml_collections/absl, and the error."""
    if "Traceback (most recent call last)" not in message:
        return message
    lines = message.strip().splitlines()
    frames = re.findall(r'File "([^"]+)", line (\d+)', message)
    user = [f"{path}, line {n}" for path, n in frames
            if not re.search(r"[/\\](ml_collections|absl)[/\\]", path)]
    where = f" ({user[-1]})" if user else ""
    return f"{lines[0].rstrip(':')}{where}: {lines[-1]}"


_INTERRUPTED = ("interrupted by Ctrl-C; run the same command again to resume from the last "
                "checkpoint, if any.")


def main(argv) -> None:
    del argv
    from vitjax.train.fast_paths import keep_host_buffers

    keep_host_buffers()  # before JAX starts its threads
    from vitjax import modes  # heavy imports after flag parsing (grain workers read the flags)

    if hasattr(sys.stdout, "reconfigure"):  # a file name that is not UTF-8 prints escaped, not as a crash
        sys.stdout.reconfigure(errors="backslashreplace")
    logging.getLogger().setLevel(logging.WARNING)  # orbax, jax and absl chatter stays quiet
    logging.getLogger("vitjax").setLevel(logging.INFO)
    try:
        if _MODE.value == "predict":
            records = modes.predict(_CONFIG.value, _WORKDIR.value, _MODEL.value, _INPUTS.value,
                                    _TOP_K.value, _OUTPUT.value, _EXPLAIN.value)
            unreadable = modes.unreadable_inputs(records)
            if unreadable:
                sys.stdout.flush()
                sys.exit(f"vitjax: {unreadable}")  # exit status 1
            return
        if _MODE.value == "export" and _FORMAT.value != "hf":
            modes.export_deployable(_WORKDIR.value, _MODEL.value, _FORMAT.value, _OUTPUT.value,
                                    _CALIBRATION.value)
            return
        if _MODE.value == "robustness" and _WORKDIR.value is not None:
            modes.robustness(_CONFIG.value, _WORKDIR.value, _MODEL.value, _SPLIT.value,
                             _ROBUSTNESS.value)
            return
        needs_config = _MODE.value in ("train", "sweep")
        if _WORKDIR.value is None or (_CONFIG.value is None and needs_config):
            sys.exit(f"vitjax: --mode {_MODE.value} needs --workdir"
                     f"{' and --config' if needs_config else ''}.")
        if _MODE.value == "train":
            modes.train(_CONFIG.value, _WORKDIR.value, _OVERWRITE.value)
        elif _MODE.value == "sweep":
            modes.sweep(_CONFIG.value, _WORKDIR.value, _SWEEP_STORAGE.value, _OVERWRITE.value)
        elif _MODE.value == "evaluate":
            modes.evaluate(_CONFIG.value, _WORKDIR.value, _MODEL.value, _SPLIT.value)
        else:
            modes.export(_CONFIG.value, _WORKDIR.value, _OUTPUT.value)
    except modes.UserError as e:
        if os.environ.get("VITJAX_TRACEBACK"):
            raise
        sys.exit(f"vitjax: {e}")
    except KeyboardInterrupt as e:  # preemption.Stopped / loop.Interrupted name the checkpoint
        print(f"vitjax: {str(e) or _INTERRUPTED}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 130))


def run() -> None:
    """Console-script entry point (`vitjax ...`; `vitjax serve ...` starts the prediction service)."""
    if sys.argv[1:2] == ["serve"]:
        from vitjax.serve.cli import main as serve
        sys.exit(serve(sys.argv[2:]))
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
