"""The diffraction store: a Zarr (v3) group with one slot per work unit, written in any order, resumable.

Layout (U units, T thicknesses, P probe positions, G×G model grid)::

    STORE.zarr/
      zarr.json          attrs: format, config (resolved), config_digest, class_angles_deg, thicknesses_a,
                         positions_a (P, 2), grid, splits, stemsight_version
      config.yaml        the resolved config, for people
      patterns           (U, T, P, G, G) float32  fraction of the probe per grid pixel (noise-free)
      angle_class        (U,) int8    index into class_angles_deg
      z_sign             (U,) int8    sign of the polarization's z part (0: in-plane class)
      tilt_mrad          (U, 2) float32
      split              (U,) int8    0 train, 1 validation
      done               (U,) bool    set after the unit's arrays are written

Every unit has a fixed slot, so the bytes do not depend on the worker count or on the order units finish;
a killed build leaves only whole units marked done, and a resumed build runs the others.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stemsight import __version__
from stemsight.core.errors import InputError
from stemsight.datasets.diffraction_config import CLASS_ANGLES_DEG, DiffractionConfig
from stemsight.datasets.diffraction_units import probe_positions_a, simulate_diffraction_unit

STORE_FORMAT = "stemsight.diffraction.v1"
SPLITS = ("train", "validation")


@dataclass(frozen=True)
class DiffractionBuild:
    path: Path
    units_total: int
    units_run: int
    seconds: float


def build_diffraction_store(
    config: DiffractionConfig,
    out: str | Path,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> DiffractionBuild:
    """Simulate every unit of ``config`` into the store ``out``: on a Dask LocalCluster of ``workers``
    single-threaded processes, on the Dask scheduler at ``scheduler``, or in this process (workers 0)."""
    from stemsight.datasets.build import _dask_client, _progress_bar, check_build_target, submit_windowed

    out = check_build_target(out, workers=workers, resume=resume)
    root = _reopen(out, config) if out.exists() else None
    done = np.asarray(root["done"][:]) if root is not None else np.zeros(config.n_units, dtype=bool)
    todo = [u for u in range(config.n_units) if not done[u]]
    start = time.perf_counter()
    use_dask = bool(todo) and (scheduler is not None or workers > 0)
    # connect (or start the cluster) before creating the store: an unreachable scheduler leaves nothing
    with _dask_client(workers, scheduler) if use_dask else contextlib.nullcontext() as client:
        root = root if root is not None else _create(out, config)
        if use_dask:
            digest = config.digest()[:12]
            results = submit_windowed(client, simulate_diffraction_unit, config, iter(todo),
                                      key=lambda unit: f"stemsight-cbed-{digest}-{unit}")
        else:
            results = (simulate_diffraction_unit(config, u) for u in todo)
        initial = config.n_units - len(todo)
        bar_options = {"enabled": progress, "desc": "diffraction store", "unit": "specimen"}
        with _progress_bar(config.n_units, initial, **bar_options) as bar:
            for result in results:
                _write_unit(root, result)
                bar.update(1)
    return DiffractionBuild(out, config.n_units, len(todo), time.perf_counter() - start)


def _write_unit(root, result: dict[str, np.ndarray]) -> None:
    unit = int(result["unit"])
    root["patterns"][unit] = result["patterns"]
    root["angle_class"][unit] = result["angle_class"]
    root["z_sign"][unit] = result["z_sign"]
    root["tilt_mrad"][unit] = result["tilt_mrad"]
    root["done"][unit] = True  # last: a unit counts only once all of it is on disk


def _create(path: Path, config: DiffractionConfig):
    import yaml
    import zarr
    from zarr.codecs import BloscCodec

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        root = zarr.open_group(str(tmp), mode="w")
        u, t, p, g = config.n_units, len(config.thicknesses_a), config.n_positions, config.grid.gpts
        codec = BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")
        root.create_array(
            "patterns",
            shape=(u, t, p, g, g),
            chunks=(1, t, p, g, g),
            dtype="float32",
            fill_value=0,
            compressors=codec,
        )
        for name, shape, dtype in (
            ("angle_class", (u,), "int8"),
            ("z_sign", (u,), "int8"),
            ("tilt_mrad", (u, 2), "float32"),
            ("split", (u,), "int8"),
            ("done", (u,), "bool"),
        ):
            root.create_array(name, shape=shape, chunks=shape, dtype=dtype, fill_value=0, compressors=codec)
        root["split"][:] = np.array([SPLITS.index(config.unit_split(i)) for i in range(u)], dtype=np.int8)
        root.attrs.update(
            {
                "format": STORE_FORMAT,
                "stemsight_version": __version__,
                "config": config.to_dict(),
                "config_digest": config.digest(),
                "class_angles_deg": list(CLASS_ANGLES_DEG),
                "thicknesses_a": list(config.thicknesses_a),
                "positions_a": probe_positions_a(config).tolist(),
                "grid": config.grid.to_dict(),
                "splits": list(SPLITS),
            }
        )
        (tmp / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        tmp.rename(path)  # the store exists only once its layout is complete
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_diffraction_store(path, mode="r+")


def _reopen(path: Path, config: DiffractionConfig):
    root = open_diffraction_store(path, mode="r+")
    if root.attrs.get("config_digest") != config.digest():
        raise InputError(f"{path}: was built from a different config; build into a new path")
    return root


def open_diffraction_store(path: str | Path, *, mode: str = "r"):
    """Open a diffraction store (zarr Group); InputError when ``path`` is not one."""
    from stemsight.datasets.store import open_group

    return open_group(Path(path), mode=mode, store_format=STORE_FORMAT, kind="diffraction store")


@dataclass(frozen=True)
class PatternSet:
    """Patterns of finished units, flattened: ``patterns`` (N, G, G), with per-pattern ``label`` (class
    index), ``thickness_a``, ``position`` (index into the store's positions), ``unit`` and ``split``."""

    patterns: np.ndarray
    label: np.ndarray
    thickness_a: np.ndarray
    position: np.ndarray
    unit: np.ndarray
    split: np.ndarray


def load_patterns(
    path: str | Path, *, split: str | None = None, thickness_a: float | None = None
) -> PatternSet:
    """The finished units' patterns of a store (optionally one split and one thickness)."""
    root = open_diffraction_store(path)
    done = np.asarray(root["done"][:])
    units = np.flatnonzero(done)
    split_codes = np.asarray(root["split"][:])
    if split is not None:
        if split not in SPLITS:
            raise InputError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
        units = units[split_codes[units] == SPLITS.index(split)]
    if units.size == 0:
        raise InputError(f"{path}: no finished units{f' in split {split}' if split else ''}")
    thicknesses = np.asarray(root.attrs["thicknesses_a"], dtype=np.float64)
    t_index = np.arange(len(thicknesses))
    if thickness_a is not None:
        t_index = np.flatnonzero(np.isclose(thicknesses, thickness_a))
        if t_index.size == 0:
            raise InputError(
                f"{path}: no thickness {thickness_a:g} Å (has {', '.join(f'{t:g}' for t in thicknesses)})"
            )
    patterns = np.asarray(root["patterns"].get_orthogonal_selection((units, t_index)))  # (u, t, p, g, g)
    n_u, n_t, n_p = patterns.shape[:3]
    shape = (n_u, n_t, n_p)
    grid = np.indices(shape)
    return PatternSet(
        patterns=patterns.reshape(-1, *patterns.shape[3:]),
        label=np.asarray(root["angle_class"][:])[units][grid[0]].ravel().astype(np.int64),
        thickness_a=thicknesses[t_index][grid[1]].ravel(),
        position=grid[2].ravel(),
        unit=units[grid[0]].ravel(),
        split=split_codes[units][grid[0]].ravel(),
    )
