"""MLflow: metrics per step, the resolved config as parameters, plots/reports and the best model as
artifacts, and the best model registered as a model version (`config.trackers.registered_model`)."""
from __future__ import annotations

import os
import time

import vitjax.trackers.run_files as run_files
from vitjax import storage


class MLflowTracker:
    name = "mlflow"

    def __init__(self, config, workdir: str, run_id: str | None):
        from mlflow import MlflowClient

        cfg = config.trackers
        self.workdir, self.registered_model = workdir, cfg.registered_model
        uri = cfg.mlflow_tracking_uri or None  # the model registry lives in the same store
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment = self.client.get_experiment_by_name(cfg.experiment)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self.client.create_experiment(cfg.experiment))
        if run_id is not None and self._exists(run_id):
            self.client.update_run(run_id, status="RUNNING")
        else:
            run_name = cfg.run_name or storage.basename(storage.absolute(workdir))
            run_id = self.client.create_run(experiment_id, run_name=run_name,
                                            tags={"vitjax.workdir": storage.absolute(workdir)}).info.run_id
            from mlflow.entities import Param
            params = [Param(k, v[:6000]) for k, v in run_files.flat_config(config).items()]
            for i in range(0, len(params), 100):
                self.client.log_batch(run_id, params=params[i:i + 100])
        self.run_id = run_id

    def _exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException
        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException:
            return False

    def write(self, step: int, scalars: dict, prefix: str) -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(f"{prefix}/{k}", float(v), now, int(step))
                                                    for k, v in scalars.items()])

    def finish(self, results: dict, workdir: str) -> None:
        """`workdir`: a local folder holding the run's files (`run_files.local_view`)."""
        for metric, value in run_files.best_metrics(results).items():
            self.client.log_metric(self.run_id, metric, value, step=int(results.get("steps", 0)))
        for path in run_files.artifacts(workdir):
            if os.path.isdir(path):
                self.client.log_artifacts(self.run_id, path, artifact_path=os.path.basename(path))
            else:
                self.client.log_artifact(self.run_id, path)
        for path in run_files.model_dirs(workdir):
            self.client.log_artifacts(self.run_id, path, artifact_path=os.path.basename(path))
        if self.registered_model and os.path.isdir(os.path.join(workdir, "best")):
            from mlflow.exceptions import MlflowException
            try:
                self.client.get_registered_model(self.registered_model)
            except MlflowException:
                self.client.create_registered_model(self.registered_model)
            source = f"{self.client.get_run(self.run_id).info.artifact_uri}/best"
            self.client.create_model_version(self.registered_model, source, run_id=self.run_id,
                                             description="vitjax best model, Hugging Face format")

    def close(self, failed: bool) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")
