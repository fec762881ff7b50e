"""Weights & Biases: metrics per step, the resolved config, the learning curves as an image, the
reports and the best model as artifacts. WANDB_MODE=offline keeps everything on the machine; the
run's files go to $WANDB_DIR or else `<workdir>/wandb`."""
from __future__ import annotations

import os

from vitjax.files import config_dict
import vitjax.trackers.run_files as run_files
from vitjax import storage


class WandbTracker:
    name = "wandb"

    def __init__(self, config, workdir: str, run_id: str | None):
        import wandb

        cfg = config.trackers
        self.workdir = workdir
        # W&B writes its files into a local folder: $WANDB_DIR, else the workdir (else the current one)
        directory = os.environ.get("WANDB_DIR") or (os.getcwd() if storage.is_remote(workdir) else workdir)
        os.makedirs(directory, exist_ok=True)
        self.run = wandb.init(project=cfg.experiment, name=cfg.run_name or storage.basename(storage.absolute(workdir)),
                              id=run_id, resume="allow", dir=directory, config=config_dict(config),
                              reinit="create_new")
        self.run_id = self.run.id

    def write(self, step: int, scalars: dict, prefix: str) -> None:
        self.run.log({f"{prefix}/{k}": float(v) for k, v in scalars.items()}, step=int(step))

    def finish(self, results: dict, workdir: str) -> None:
        """`workdir`: a local folder holding the run's files (`run_files.local_view`)."""
        import wandb

        self.run.summary.update(run_files.best_metrics(results))
        curves = os.path.join(workdir, "learning_curves.png")
        if os.path.exists(curves):
            self.run.log({"learning_curves": wandb.Image(curves)})
        reports = wandb.Artifact(f"{self.run.id}-reports", type="evaluation")
        for path in run_files.artifacts(workdir):
            (reports.add_dir if os.path.isdir(path) else reports.add_file)(path, name=os.path.basename(path))
        self.run.log_artifact(reports)
        for path in run_files.model_dirs(workdir):
            model = wandb.Artifact(f"{self.run.id}-{os.path.basename(path)}", type="model")
            model.add_dir(path)
            self.run.log_artifact(model, aliases=["best"])

    def close(self, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)
