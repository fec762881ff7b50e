"""Every figure vitjax saves, checked as it is saved: matplotlib's `Figure.savefig` is wrapped while a
run goes, and each figure is read for labelled axes (both, on every axes that shows its axis; a
colorbar its own label) or, for pictures drawn without axes (overlays, drawn boxes), a legend."""
from __future__ import annotations

import contextlib
import os

import pytest
from matplotlib.figure import Figure


def problems(fig: Figure) -> list[str]:
    """What the figure lacks: '' when every axes is labelled or, drawn without axes, the figure has
    a legend."""
    found = []
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    for i, ax in enumerate(fig.axes):
        if not ax.axison:
            if not legends:
                found.append(f"axes {i} ({ax.get_title()!r}) is drawn without axes and the figure has no legend")
        elif ax.get_label() == "<colorbar>":
            if not (ax.get_xlabel() or ax.get_ylabel()):
                found.append(f"the colorbar of axes {i} has no label")
        elif not (ax.get_xlabel() and ax.get_ylabel()):
            found.append(f"axes {i} ({ax.get_title()!r}) has x label {ax.get_xlabel()!r}, y label "
                         f"{ax.get_ylabel()!r}")
    return found


def legend_texts(fig: Figure) -> list[str]:
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    return [text.get_text() for legend in legends for text in legend.get_texts()]


@contextlib.contextmanager
def recorded_figures():
    """Yields {path of the PNG written: the figure}, filled as figures are saved (`save_figure`
    writes `x.partial.png` and renames it to `x.png`: the final name is recorded)."""
    saved: dict[str, Figure] = {}
    original = Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        saved[os.path.abspath(os.fspath(fname)).replace(".partial.png", ".png")] = self
        return original(self, fname, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", savefig)
        yield saved


def assert_every_png_labelled(root: str, saved: dict[str, Figure], data_files: tuple[str, ...] = ()) -> list[str]:
    """Every PNG under `root` was saved as a figure with labelled axes or a legend; `data_files`:
    name endings of PNGs that are data, not pictures (predicted masks). Returns the PNGs checked."""
    pngs = sorted(os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names
                  if name.endswith(".png") and not name.endswith(data_files))
    assert pngs, f"no PNG under {root}"
    unlabelled = {png: problems(saved[png]) for png in pngs if png in saved and problems(saved[png])}
    not_figures = [png for png in pngs if png not in saved]
    assert not not_figures, f"PNGs not written through matplotlib (unchecked): {not_figures}"
    assert not unlabelled, unlabelled
    return pngs
