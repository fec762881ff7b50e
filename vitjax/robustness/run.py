"""`--mode robustness`: the robustness report of a trained run's model on one split.

One clean pass (the task's metrics, plus the logits for calibration), one pass per corruption and
severity, one per attack and epsilon, then calibration before and after temperature scaling and,
with `--robustness.source`, the clean metrics on another source whose class names match. Every
pass goes through the task's own metrics (`metrics`/`metric_inputs`/`summarize`), so segmentation
and detection get the corruption sweep in mIoU and mAP; attacks and calibration need class logits
(tasks declaring `class_logits`: classification, single- or multi-label). `vitjax.robustness.report`
writes the files.
"""
from __future__ import annotations

import logging
import time

import jax
import numpy as np

from vitjax import parallel, report_page, storage
from vitjax.errors import BadKey, BadValue
from vitjax.robustness import attacks, calibration, corruptions, inputs, report
from vitjax.workdir import ROBUSTNESS, Workdir

log = logging.getLogger(__name__)
OUTDIR = ROBUSTNESS


class _Evaluator:
    """The report's one compiled program: the task's metrics of a batch — for a task with class
    logits after an optional attack (`attacks.Attack`; the clean images take 0 steps), with the
    logits — jitted over the mesh with replicated results, like the evaluation step."""

    def __init__(self, run, params, seed: int):
        self.run, self.params = run, params
        self.classifier = run.model.task.class_logits
        self.key = jax.random.key(seed)
        perturb = attacks.make_perturb(run.model.module, run.model.normalize) if self.classifier else None

        def step(params, batch, attack_args, rng):
            pixels = perturb(params, batch, *attack_args, rng) if perturb else batch["image"]
            outputs = run.model.module.apply({"params": params}, run.model.normalize(pixels), train=False)
            _, aux = run.model.task.loss(outputs, batch)
            metrics = run.model.task.metrics().single_from_model_output(
                **run.model.task.metric_inputs(outputs, batch, aux))
            if perturb is None:
                return metrics, None
            return metrics, {"logits": outputs, "label": batch["label"], "valid": batch["valid"]}

        self.step = jax.jit(step, out_shardings=parallel.replicated(run.mesh))

    def __call__(self, examples, padding, attack: attacks.Attack = attacks.NONE):
        """(the task's summary, logits of the valid rows or None, their labels) over `examples`."""
        run, merged, logits, labels = self.run, None, [], []
        for i, local in enumerate(inputs.batches(run, examples, padding)):
            update, extra = self.step(self.params, parallel.global_batch(local, run.mesh),
                                      attack.args(), jax.random.fold_in(self.key, i))
            merged = update if merged is None else merged.merge(update)
            if extra is not None:
                extra = jax.device_get(extra)
                valid = np.asarray(extra["valid"], bool)
                logits.append(np.asarray(extra["logits"], np.float32)[valid])
                labels.append(np.asarray(extra["label"])[valid])
        summary = run.model.task.summarize(jax.device_get(merged.compute()))
        if not logits:
            return summary, None, None
        return summary, np.concatenate(logits), np.concatenate(labels)

    def split(self, split_source):
        return self(*inputs.examples_of(self.run, split_source))


def corruption_sweep(evaluate: _Evaluator, split_source, options, metric: str) -> dict:
    """{corruption: {severity: the task's `metric`}} on `split_source` corrupted in the data workers."""
    examples, padding = inputs.examples_of(evaluate.run, split_source)
    table = {}
    for name in options.corruptions:
        table[name] = {}
        for severity in options.severities:
            corrupted = inputs.CorruptedExamples(examples, name, severity, options.seed)
            table[name][str(severity)] = evaluate(corrupted, padding)[0][metric]
        log.info("corruption %-18s %s", name, " ".join(f"{v:.3f}" for v in table[name].values()))
    return table


def attack_sweep(evaluate: _Evaluator, split_source, options, metric: str) -> dict:
    """{"fgsm": {epsilon: metric}, "pgd": {...}} with epsilons in pixel levels (of 255)."""
    examples, padding = inputs.examples_of(evaluate.run, split_source)
    table = {"fgsm": {}, "pgd": {}}
    for epsilon in options.epsilons:
        for name, attack in (("fgsm", attacks.Attack.fgsm(epsilon)),
                             ("pgd", attacks.Attack.pgd(epsilon, options.pgd_steps,
                                                        options.pgd_step_ratio))):
            table[name][f"{float(epsilon):g}"] = evaluate(examples, padding, attack)[0][metric]
    for name, row in table.items():
        log.info("attack %-4s %s", name, " ".join(f"{v:.3f}" for v in row.values()))
    return table


def _calibration(evaluate: _Evaluator, logits, labels, options) -> dict:
    before = calibration.calibration(logits, labels, bins=options.calibration_bins)
    result = {"before": before}
    if options.temperature_scaling:
        splits = evaluate.run.data.dataset.splits
        if "validation" not in splits:
            log.warning("no validation split: temperature scaling skipped")
            return result
        _, val_logits, val_labels = evaluate.split(splits["validation"])
        temperature = calibration.fit_temperature(val_logits, val_labels)
        result["after"] = calibration.calibration(logits, labels, temperature,
                                                  bins=options.calibration_bins)
    return result


def cross_domain(evaluate: _Evaluator, options) -> dict:
    """The clean metrics on every record of `options.source` whose class the model knows."""
    run = evaluate.run
    data_cfg = run.config.data.copy_and_resolve_references()
    data_cfg.source = options.source
    other = type(run.model.task).open_source(data_cfg, run.config.task)
    mapping, classes = inputs.match_classes(run.data.dataset.class_names, other.class_names)
    source = inputs.RelabeledSource(other.splits.values(), mapping)
    if len(source) == 0:
        raise BadValue(f"--robustness.source={options.source!r} has no image of the model's classes.")
    summary, logits, labels = evaluate.split(source)
    result = {"source": options.source, "images": len(source), **classes, "metrics": summary}
    if logits is not None:
        ece = calibration.calibration(logits, labels, bins=options.calibration_bins)["ece"]
        result["metrics"] = {**summary, "ece": ece}
    for what, names in classes.items():
        if names:
            log.warning("cross-domain: classes %s: %s", what.replace("_", " "), names)
    return result


def robustness_report(config, workdir: str, split: str, options, model_dir: str) -> dict:
    """Writes `<workdir>/robustness/` (report.json, report.md, heat map, reliability diagram) for
    the trained model in `model_dir` (`vitjax.trained.load_trained`: `best/` or `best_vitjax/`) on
    `split`, and adds a robustness table to the model card in `model_dir`, if any; returns the report."""
    from vitjax.train import setup
    from vitjax.trained import load_trained

    started = time.perf_counter()
    if options.baseline:
        report.baseline_report(options.baseline)  # a missing one fails before the work
    trained = load_trained(model_dir, config.task)
    run = setup.build_eval_run(config, workdir, trained)
    if split not in run.data.dataset.splits:
        raise BadKey(f"--split {split!r} is not a split of {run.data.dataset.source}; "
                     f"choose one of {sorted(run.data.dataset.splits)}.")
    corruptions.check(options.corruptions, options.severities, run.model.preprocessing.input_size)
    evaluate = _Evaluator(run, run.model.placed_params(), options.seed)
    metric = run.model.task.best_metric[0]
    split_source = run.data.dataset.splits[split]
    timings = {"setup": time.perf_counter() - started}

    def timed(name, fn, *args):
        begun = time.perf_counter()
        value = fn(*args)
        timings[name] = time.perf_counter() - begun
        return value

    clean, logits, labels = timed("clean", evaluate.split, split_source)
    result = {"model": model_dir, "data_source": run.data.dataset.source, "split": split,
              "images": len(split_source), "input_size": list(run.model.preprocessing.input_size),
              "task": run.model.task.name, "metric": metric,
              "options": options.to_dict(), "clean": clean,
              "corruptions": timed("corruptions", corruption_sweep, evaluate, split_source, options,
                                   metric)}
    if evaluate.classifier and len(options.epsilons):
        result["attacks"] = timed("attacks", attack_sweep, evaluate, split_source, options, metric)
    if evaluate.classifier:
        result["calibration"] = timed("calibration", _calibration, evaluate, logits, labels, options)
    if options.source:
        result["cross_domain"] = timed("cross_domain", cross_domain, evaluate, options)
    result["summary"] = report.summarize(result, run.model.task.best_metric[1])
    if options.baseline:
        result["baseline"] = report.against_baseline(result, options.baseline)
    result["wall_time_s"] = time.perf_counter() - started
    result["timings_s"] = timings
    if jax.process_index() == 0:
        with storage.local_output(storage.join(workdir, OUTDIR)) as outdir:  # uploaded on object storage
            report.write(result, outdir)
        if storage.isfile(storage.join(model_dir, "README.md")):
            report.add_to_model_card(result, model_dir)
        report_page.write(Workdir(workdir), run.model.task, run.data.dataset, config.train.test_split, trained)
        print(report.markdown(result))
    return result
