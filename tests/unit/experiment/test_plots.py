"""plot_training_curves: every epoch is drawn as a marker, so one epoch is not empty axes."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

from matplotlib.figure import Figure

from dinrec.experiment import plots


def test_a_one_epoch_run_draws_a_marker_on_every_panel(tmp_path: Path) -> None:
    figures: list[Figure] = []
    real_save = plots._save

    def keep(fig: Figure, path: Path) -> Path:
        figures.append(fig)
        return real_save(fig, path)

    record = {"epoch": 1, "loss": 0.6, "auc": 0.7, "gauc": 0.65, "val_logloss": 0.62,
              "val_auc": 0.69, "val_gauc": 0.64}
    with mock.patch.object(plots, "_save", keep):
        out = plots.plot_training_curves({"DIN": [record]}, tmp_path / "c.png")
    assert out.is_file() and out.stat().st_size > 0
    (fig,) = figures
    for ax in fig.axes:
        lines = ax.get_lines()
        assert len(lines) == 2  # validation and training
        for line in lines:
            assert line.get_marker() not in (None, "", "None")
            assert list(line.get_xdata()) == [1]
