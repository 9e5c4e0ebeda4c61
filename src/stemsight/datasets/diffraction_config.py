"""The 4D-STEM case grid: which convergent-beam patterns of KNN a diffraction store holds.

A YAML file (`examples/fourd/knn.yaml`) gives the optics, the model grid, the specimen and how many
random specimens per polarization class; every field is checked and the resolved config is written into
the store. A work unit is one specimen (one class, one random K/Na arrangement, z sign and tilt) seen at
every probe position and every exit thickness; unit ``u`` has class ``u % 8`` and specimen index
``u // 8``, so a partly built store is balanced over the classes.

    name: knn-cbed
    seed: 0
    energy_kev: 200
    convergence_mrad: 20
    grid: {gpts: 41, sampling_mrad: 2.0}     # the models' angular grid (±40 mrad; odd: beam in the middle)
    cell_repeats: [3, 3]                      # pseudocubic cells across x, y (sets the pattern's resolution)
    thicknesses_a: [200]                      # exit thicknesses
    positions_per_side: 4                     # probe positions across the unit cell (a grid)
    specimens_per_class: 8
    tilt_mrad: 1.0                            # max |tilt| per axis, uniform per specimen
    defocus_a: 0
    validation_specimens: 1                   # the last ones of each class; the rest train
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stemsight.core.errors import InputError
from stemsight.datasets.config import _int, _number, _positive
from stemsight.datasets.diffraction_grid import GridSpec

N_CLASSES = 8
CLASS_ANGLES_DEG = tuple(45 * i for i in range(N_CLASSES))


@dataclass(frozen=True)
class DiffractionConfig:
    name: str = "knn-cbed"
    seed: int = 0
    energy_kev: float = 200.0
    convergence_mrad: float = 20.0
    grid: GridSpec = field(default_factory=GridSpec)
    cell_repeats: tuple[int, int] = (3, 3)
    thicknesses_a: tuple[float, ...] = (200.0,)
    positions_per_side: int = 4
    specimens_per_class: int = 8
    tilt_mrad: float = 1.0
    defocus_a: float = 0.0
    validation_specimens: int = 1

    @property
    def n_units(self) -> int:
        return N_CLASSES * self.specimens_per_class

    @property
    def n_positions(self) -> int:
        return self.positions_per_side**2

    def unit_class(self, unit: int) -> int:
        return unit % N_CLASSES

    def unit_specimen(self, unit: int) -> int:
        return unit // N_CLASSES

    def unit_split(self, unit: int) -> str:
        first_validation = self.specimens_per_class - self.validation_specimens
        return "validation" if self.unit_specimen(unit) >= first_validation else "train"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["grid"] = self.grid.to_dict()
        out["cell_repeats"] = list(self.cell_repeats)
        out["thicknesses_a"] = list(self.thicknesses_a)
        return out

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def replace(self, **changes: Any) -> DiffractionConfig:
        return config_from_dict({**self.to_dict(), **changes})


def load_diffraction_config(path: str | Path) -> DiffractionConfig:
    """Read and check a YAML case grid (InputError naming the file and the field on any problem)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: not a readable YAML file ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of settings at the top level")
    try:
        return config_from_dict(data)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def config_from_dict(data: dict[str, Any]) -> DiffractionConfig:
    """A checked `DiffractionConfig` from a plain mapping (unknown keys are errors)."""
    defaults = DiffractionConfig()
    known = set(defaults.to_dict())
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    get = lambda key: data.get(key, getattr(defaults, key))  # noqa: E731
    grid = data.get("grid", defaults.grid.to_dict())
    if not isinstance(grid, dict) or set(grid) - {"gpts", "sampling_mrad"}:
        raise InputError("grid: expected {gpts: N, sampling_mrad: S}")
    grid_spec = GridSpec(
        gpts=_int(grid.get("gpts", 41), "grid.gpts", low=33),
        sampling_mrad=_positive(grid.get("sampling_mrad", 2.0), "grid.sampling_mrad"),
    )
    repeats = get("cell_repeats")
    if not isinstance(repeats, list | tuple) or len(repeats) != 2:
        raise InputError(f"cell_repeats: expected [nx, ny], got {repeats!r}")
    thicknesses = get("thicknesses_a")
    if not isinstance(thicknesses, list | tuple) or not thicknesses:
        raise InputError(f"thicknesses_a: expected a non-empty list of thicknesses (Å), got {thicknesses!r}")
    thick = tuple(_positive(t, "thicknesses_a") for t in thicknesses)
    if list(thick) != sorted(set(thick)):
        raise InputError("thicknesses_a: expected increasing, distinct thicknesses")
    config = DiffractionConfig(
        name=str(get("name")),
        seed=_int(get("seed"), "seed", low=0),
        energy_kev=_positive(get("energy_kev"), "energy_kev"),
        convergence_mrad=_positive(get("convergence_mrad"), "convergence_mrad"),
        grid=grid_spec,
        cell_repeats=(_int(repeats[0], "cell_repeats", low=1), _int(repeats[1], "cell_repeats", low=1)),
        thicknesses_a=thick,
        positions_per_side=_int(get("positions_per_side"), "positions_per_side", low=1),
        specimens_per_class=_int(get("specimens_per_class"), "specimens_per_class", low=1),
        tilt_mrad=_non_negative(get("tilt_mrad"), "tilt_mrad"),
        defocus_a=_number(get("defocus_a"), "defocus_a"),
        validation_specimens=_int(get("validation_specimens"), "validation_specimens", low=0),
    )
    if config.validation_specimens >= config.specimens_per_class:
        raise InputError("validation_specimens: must leave at least one training specimen per class")
    if config.convergence_mrad >= config.grid.max_angle_mrad:
        raise InputError(
            f"grid: ±{config.grid.max_angle_mrad:g} mrad does not hold the {config.convergence_mrad:g} "
            "mrad bright-field disc"
        )
    return config


def _non_negative(value: Any, key: str) -> float:
    number = _number(value, key)
    if number < 0:
        raise InputError(f"{key}: must be >= 0, got {value!r}")
    return number
