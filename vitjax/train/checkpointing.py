"""Run checkpoints with orbax: the best k by the tracked metric plus the latest, for resume.

A checkpoint holds three items: `state` (step, params, optimizer state, EMA, RNG; restored
with the current shardings, so a run may resume on another device count), `data` (the input
iterator's state, so a resumed run sees the very next batch) and `host` (epoch, history,
early-stopping and plateau state). orbax writes each step to a temporary directory and renames
it when complete, so an interrupted save is never mistaken for a finished one.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


class Checkpointer:
    """Keeps the latest checkpoint and the `keep_best` best by `metric` (mode "max"/"min")."""

    def __init__(self, directory: str, *, metric: str, mode: str, keep_best: int = 1,
                 async_save: bool = True):
        self.metric = metric
        best = lambda m: m[metric]  # noqa: E731
        policy = policies.AnyPreservationPolicy([
            policies.LatestN(1),
            policies.BestN(get_metric_fn=best, reverse=mode == "min", n=keep_best,
                           keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(
            best_fn=best, best_mode=mode, preservation_policy=policy,
            enable_async_checkpointing=async_save, create=True)
        self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        """The best step by the tracked metric, or the latest when none carries metrics."""
        return self._manager.best_step()

    def save(self, step: int, state, data_state: dict, host_state: dict,
             metrics: dict | None = None) -> None:
        """Saves asynchronously; `metrics` (scalar floats incl. the tracked one) rank it.

        A step already saved is kept as it is, unless it was saved without metrics (an
        interruption before its evaluation) and now comes with them: then it is replaced.
        """
        if metrics is not None and self.metric not in metrics:
            raise KeyError(f"checkpoint metrics lack the tracked metric {self.metric!r}; "
                           f"got {sorted(metrics)}")
        if step in self._manager.all_steps():
            if metrics is None or self._manager.metrics(step) is not None:
                return
            self._manager.wait_until_finished()
            self._manager.delete(step)
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=ocp.args.JsonSave(data_state),
                                  host=ocp.args.JsonSave(host_state))
        self._manager.save(step, args=args, metrics=metrics, force=True)

    def restore(self, step: int, abstract_state):
        """Returns (state, data_state, host_state); `abstract_state` carries target shardings."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                  data=ocp.args.JsonRestore(), host=ocp.args.JsonRestore())
        out = self._manager.restore(step, args=args)
        return out["state"], out["data"], out["host"]

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
