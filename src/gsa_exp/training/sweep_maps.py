"""Every learned map of a sweep in one figure: rows backbones, columns data sets.

Reads each job directory's config and ``attention_map.npy``, so no model and no data are
needed; how cells are filled and what a panel says: docs/method.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from gsa_exp.backbones import list_backbones
from gsa_exp.durable import save_figure
from gsa_exp.run_files import ERROR_FILE, MAP_NPY, METRICS_FILE

GRID_PNG = "attention_maps_grid.png"


@dataclass
class Cell:
    """The jobs of one (backbone, column) pair: their maps and the ones that have none."""

    jobs: list[str] = field(default_factory=list)
    maps: list[np.ndarray] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def shown(self) -> np.ndarray | None:
        """The mean map, or the first job's map when the shapes differ; None without maps."""
        if not self.maps:
            return None
        if len({values.shape for values in self.maps}) > 1:
            return self.maps[0]
        return np.mean(np.stack(self.maps), axis=0)


@dataclass
class MapGrid:
    """The figure's content: row and column labels, the cells, and jobs that should have had a map."""

    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    missing: list[str]  # "<job>: <why>"
    skipped: list[str]  # attention=none jobs

    @property
    def layout(self) -> tuple[int, int]:
        return len(self.rows), len(self.columns)


@dataclass
class _Job:
    name: str
    backbone: str
    dataset: str
    attention: str
    seed: Any
    map_path: Path


def is_sweep_directory(path: Path) -> bool:
    """A directory with job directories (``<job>/.hydra/config.yaml``) under it."""
    return path.is_dir() and any(
        child.is_dir() and (child / ".hydra" / "config.yaml").is_file() for child in path.iterdir()
    )


def _job_directories(sweep_dir: Path) -> list[Path]:
    return sorted(child for child in sweep_dir.iterdir() if child.is_dir() and (child / ".hydra").is_dir())


def _read_job(job_dir: Path) -> _Job:
    cfg = OmegaConf.load(job_dir / ".hydra" / "config.yaml")

    def value(key: str) -> Any:
        return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)

    return _Job(
        name=job_dir.name,
        backbone=str(value("backbone.name") or "?"),
        dataset=str(value("dataset.name") or "?"),
        attention=str(value("attention.name") or "?"),
        seed=value("seed"),
        map_path=job_dir / MAP_NPY,
    )


def _why_no_map(job_dir: Path) -> str:
    if (job_dir / ERROR_FILE).is_file():
        return f"no {MAP_NPY} (the job failed: see error.txt)"
    if not (job_dir / METRICS_FILE).is_file():
        return f"no {MAP_NPY} (the job did not finish)"
    return f"no {MAP_NPY}"


def _seed_order(seed: Any) -> tuple[int, str]:
    return (0, f"{seed:012d}") if isinstance(seed, int) else (1, str(seed))


def collect_maps(sweep_dir: Path) -> MapGrid:
    """Read every job of ``sweep_dir`` into the grid (no figure)."""
    jobs, missing, skipped = [], [], []
    for job_dir in _job_directories(sweep_dir):
        try:
            jobs.append(_read_job(job_dir))
        except Exception as error:  # a half-written or edited config: name the job, keep going
            missing.append(f"{job_dir.name}: unreadable .hydra/config.yaml ({type(error).__name__}: {error})")
    attended = []
    for job in jobs:
        (skipped if job.attention == "none" else attended).append(job)
    several_variants = len({job.attention for job in attended}) > 1
    cells: dict[tuple[str, str], Cell] = {}
    for job in sorted(attended, key=lambda job: (_seed_order(job.seed), job.name)):
        column = f"{job.dataset}: {job.attention}" if several_variants else job.dataset
        cell = cells.setdefault((job.backbone, column), Cell())
        cell.jobs.append(job.name)
        if job.map_path.is_file():
            try:
                cell.maps.append(np.load(job.map_path).astype(np.float32))
                continue
            except (OSError, ValueError) as error:
                reason = f"unreadable {MAP_NPY} ({error})"
        else:
            reason = _why_no_map(job.map_path.parent)
        cell.missing.append(job.name)
        missing.append(f"{job.name}: {reason}")
    backbones = {backbone for backbone, _ in cells}
    order = list_backbones()  # the registry's table order; names it does not know go last
    rows = [name for name in order if name in backbones] + sorted(backbones - set(order))
    columns = sorted({column for _, column in cells})
    return MapGrid(rows, columns, cells, missing, [job.name for job in skipped])


def map_grid_figure(grid: MapGrid, title: str) -> Any:
    """Rows backbones, columns data sets; a panel per cell (``MapGrid.layout``), empty cells marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count_rows, count_columns = grid.layout
    figure, axes = plt.subplots(
        count_rows, count_columns, figsize=(2.2 * count_columns + 1.4, 2.2 * count_rows + 0.8), squeeze=False, dpi=100
    )
    shown = None
    for row_index, row in enumerate(grid.rows):
        for column_index, column in enumerate(grid.columns):
            axis = axes[row_index, column_index]
            axis.set_xticks([])
            axis.set_yticks([])
            cell = grid.cells.get((row, column))
            values = cell.shown if cell is not None else None
            if values is not None:
                shown = axis.imshow(values, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
            header = f"{column}\n" if row_index == 0 else ""
            color = "red" if cell is not None and cell.missing else "black"
            axis.set_title(header + _panel_title(cell), fontsize=7, color=color)
            if column_index == 0:
                axis.set_ylabel(row, fontsize=9)
    if shown is not None:
        figure.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02)
    figure.suptitle(title, fontsize=9)
    return figure


def _panel_title(cell: Cell | None) -> str:
    if cell is None:
        return "no job"
    if not cell.maps:
        return "map missing: " + ", ".join(_short(name) for name in cell.missing)
    found, same_shape = len(cell.maps), len({values.shape for values in cell.maps}) == 1
    text = (
        "1 map" if found == 1 else f"mean of {found} maps" if same_shape else f"first of {found} maps (shapes differ)"
    )
    if cell.missing:
        text += f"; {len(cell.missing)} of {len(cell.jobs)} missing"
    return text


def _short(name: str, limit: int = 24) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def write_map_grid(sweep_dir: Path, out_dir: Path | None = None) -> tuple[Path | None, MapGrid]:
    """``attention_maps_grid.png`` in ``out_dir`` (default: the sweep directory); no file when no job has a map slot."""
    import matplotlib.pyplot as plt

    grid = collect_maps(sweep_dir)
    if not grid.cells:
        return None, grid
    figure = map_grid_figure(grid, f"attention maps of {sweep_dir.name} (rows: backbone, columns: data set)")
    target = out_dir if out_dir is not None else sweep_dir
    path = target / GRID_PNG
    save_figure(figure, path)
    plt.close(figure)
    return path, grid
