"""Console progress: a tqdm bar with loss, lr, img/s and ETA, and one summary table per evaluation."""

from __future__ import annotations

from tqdm.auto import tqdm


class Progress:
    """Progress bar over training steps; silent when `enabled` is False (other processes)."""

    def __init__(self, total: int, initial: int, enabled: bool = True):
        self.enabled = enabled
        self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                         disable=not enabled)

    def update(self, step: int, scalars: dict) -> None:
        self._bar.update(step - self._bar.n)
        self._bar.set_postfix(loss=f"{scalars.get('loss', float('nan')):.4f}",
                              lr=f"{scalars.get('lr', 0.0):.2e}",
                              img_s=f"{scalars.get('images_per_s', 0.0):.0f}", refresh=False)

    def epoch_table(self, record: dict) -> None:
        """Prints one history record's train and validation metrics side by side."""
        if not self.enabled:
            return
        metrics = sorted({key.partition("/")[2] for key in record if "/" in key}
                         - {"lr", "grad_norm", "images_per_s"})
        lines = [f"epoch {record['epoch']:.2f} (step {record['step']})",
                 f"  {'metric':<24}{'train':>12}{'validation':>12}"]
        for k in metrics:
            tr, va = record.get(f"train/{k}"), record.get(f"validation/{k}")
            lines.append(f"  {k:<24}{_fmt(tr):>12}{_fmt(va):>12}")
        self._bar.write("\n".join(lines))

    def close(self) -> None:
        self._bar.close()


def _fmt(v) -> str:
    return "" if v is None else f"{v:.4f}"
