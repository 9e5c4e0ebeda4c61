"""Dataset configs: a YAML case grid resolved into frozen dataclasses.

A *case* is one (host, dopant, imaging condition) triple; each case gets `images_per_case` images, each
image a per-item seed spawned from the master seed, and every lattice site of every image becomes a patch.
Splits are by case: a case goes to `test` when it matches any selector of the test rule, else to
`validation` when it matches that rule, else to `train` (so whole dopants or imaging conditions can be
held out).

YAML keys (see `examples/datasets/tiny.yaml`)::

    name: tiny                      # free text
    seed: 0                         # master seed
    images_per_case: 2
    image_size_px: 128              # square images; the field of view is image_size_px × pixel size
    engine: fast                    # fast | abtem
    patch: {size_px: 24, size_a: 4.8}
    hosts:                          # host -> dopants (a symbol, 'Se:X' to set the site, or null: undoped)
      MoS2: {dopants: [V, Nb, Se], phase: 2H}
    imaging:                        # a grid (product of the lists) or a list of single conditions
      energy_kev: [60, 80]
      convergence_mrad: [30]
      detector_mrad: [[80, 200]]
      pixel_size_a: [0.12]
    dose_e_per_a2: [1.0e4, 1.0e6]   # log-uniform per image; one number fixes it; null: no shot noise
    fractions: default              # or {D_M: 0.03, V_X: 0.02, ...}; labels a case cannot have are skipped;
                                    # [low, high]: uniform per image (alloys, Janus layers: D_X: [0, 0.6])
    realism: default                # default | off | {source_fwhm_a: [0.3, 0.8], ...} (RealismRanges)
    splits:
      validation: {dopants: [Nb]}
      test: {hosts: [], dopants: [Se], conditions: ["80kV_30mrad_80-200mrad_0.12A"], cases: []}
    build_splits: [train, validation, test]   # simulate only the cases of these splits (e.g. [test])
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stemsight.core.context import ImagingContext
from stemsight.core.errors import InputError
from stemsight.core.hosts import infer_dopant_site, parse_host
from stemsight.core.io import read_text

SPLITS = ("train", "validation", "test")
DEFAULT_PATCH_SIZE_PX, DEFAULT_PATCH_SIZE_A = 24, 4.8
"""Patch grid when a config gives none: 24 points over 4.8 Å (0.2 Å steps)."""
MAX_IMAGE_SIZE_PX = 8192
"""Largest image side (px): one float32 image of 8192² px is 0.27 GB, in memory and in one store chunk."""
_TOP_KEYS = (
    "name",
    "seed",
    "images_per_case",
    "image_size_px",
    "engine",
    "patch",
    "hosts",
    "imaging",
    "dose_e_per_a2",
    "fractions",
    "realism",
    "splits",
    "build_splits",
)
_SELECTOR_KEYS = ("hosts", "dopants", "conditions", "cases")


@dataclass(frozen=True)
class Condition:
    """One imaging condition: beam energy (keV), probe semi-angle and detector range (mrad), pixel (Å)."""

    energy_kev: float
    convergence_mrad: float
    detector_inner_mrad: float
    detector_outer_mrad: float
    pixel_size_a: float

    @property
    def name(self) -> str:
        return (
            f"{self.energy_kev:g}kV_{self.convergence_mrad:g}mrad_"
            f"{self.detector_inner_mrad:g}-{self.detector_outer_mrad:g}mrad_{self.pixel_size_a:g}A"
        )


@dataclass(frozen=True)
class HostEntry:
    """A host with its phase and dopants: (element or None for undoped, sublattice or None)."""

    host: str
    phase: str
    dopants: tuple[tuple[str | None, str | None], ...]


@dataclass(frozen=True)
class SplitRule:
    hosts: tuple[str, ...] = ()
    dopants: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    cases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    """One cell of the grid. `index` is its position in grid order (hosts × dopants × conditions)."""

    index: int
    host: str
    phase: str
    dopant: str | None
    dopant_site: str | None
    condition: Condition
    split: str

    @property
    def name(self) -> str:
        dopant = "undoped" if self.dopant is None else f"{self.dopant}@{self.dopant_site}"
        return f"{self.host}:{dopant}/{self.condition.name}"

    def context(self, dose_e_per_a2: float | None) -> ImagingContext:
        c = self.condition
        return ImagingContext(
            host=self.host,
            dopant=self.dopant,
            dopant_site=self.dopant_site,
            energy_kev=c.energy_kev,
            convergence_mrad=c.convergence_mrad,
            detector_inner_mrad=c.detector_inner_mrad,
            detector_outer_mrad=c.detector_outer_mrad,
            pixel_size_a=c.pixel_size_a,
            dose_e_per_a2=dose_e_per_a2,
        )


@dataclass(frozen=True)
class DatasetConfig:
    """A resolved case grid (see the module docstring for the meaning of each field).

    dose_e_per_a2: (low, high) of the log-uniform per-image dose (low == high fixes it), or None.
    fractions: defect label -> fraction of its sublattice, or (low, high) drawn uniformly per image; None
    for `default_fractions`.
    realism: 'default', 'off' or a mapping of `RealismRanges` fields.
    """

    name: str
    seed: int
    images_per_case: int
    image_size_px: int
    engine: str
    patch_size_px: int
    patch_size_a: float
    hosts: tuple[HostEntry, ...]
    conditions: tuple[Condition, ...]
    dose_e_per_a2: tuple[float, float] | None
    fractions: Mapping[str, float | tuple[float, float]] | None
    realism: str | Mapping[str, tuple[float, float]]
    splits: Mapping[str, SplitRule]
    build_splits: tuple[str, ...] = SPLITS

    @functools.cached_property
    def cases(self) -> tuple[Case, ...]:
        return _cases(self)

    @property
    def n_units(self) -> int:
        """Work units: one per image."""
        return len(self.cases) * self.images_per_case

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as JSON-ready data (it loads back with `config_from_dict`)."""
        return {
            "name": self.name,
            "seed": self.seed,
            "images_per_case": self.images_per_case,
            "image_size_px": self.image_size_px,
            "engine": self.engine,
            "patch": {"size_px": self.patch_size_px, "size_a": self.patch_size_a},
            "hosts": {
                h.host: {
                    "phase": h.phase,
                    "dopants": [None if d is None else f"{d}:{s}" for d, s in h.dopants],
                }
                for h in self.hosts
            },
            "imaging": [
                {
                    "energy_kev": c.energy_kev,
                    "convergence_mrad": c.convergence_mrad,
                    "detector_mrad": [c.detector_inner_mrad, c.detector_outer_mrad],
                    "pixel_size_a": c.pixel_size_a,
                }
                for c in self.conditions
            ],
            "dose_e_per_a2": None if self.dose_e_per_a2 is None else list(self.dose_e_per_a2),
            "fractions": "default" if self.fractions is None else {
                k: list(v) if isinstance(v, tuple) else v for k, v in self.fractions.items()
            },
            "realism": self.realism if isinstance(self.realism, str) else {
                k: list(v) for k, v in self.realism.items()
            },
            "splits": {
                name: {k: list(v) for k, v in dataclasses.asdict(rule).items() if v}
                for name, rule in self.splits.items()
            },
            "build_splits": list(self.build_splits),
        }

    def digest(self) -> str:
        """sha256 of the resolved config's canonical JSON (what a resumed build must match)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def realism_ranges(self):
        """The `RealismRanges` the config asks for."""
        from stemsight.realism import RealismRanges

        if self.realism == "off":
            return RealismRanges.off()
        if self.realism == "default":
            return RealismRanges()
        return RealismRanges(**{k: tuple(v) for k, v in self.realism.items()})


def load_config(path: str | Path) -> DatasetConfig:
    """Read a YAML case grid; InputError naming the file and the key for anything wrong."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(read_text(path))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid YAML ({_first_line(exc)})") from None
    try:
        return config_from_dict(data)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def config_from_dict(data: Any) -> DatasetConfig:
    """Resolve and check a config mapping (the YAML's content)."""
    if not isinstance(data, Mapping):
        raise InputError(f"config: expected a mapping of keys, got {type(data).__name__}")
    _check_keys(data, _TOP_KEYS, "config")
    for key in ("hosts", "imaging"):
        if key not in data:
            raise InputError(f"config: missing required key {key!r}")
    patch = _mapping(data.get("patch", {}), "patch")
    _check_keys(patch, ("size_px", "size_a"), "patch")
    engine = data.get("engine", "fast")
    if engine not in ("fast", "abtem"):
        raise InputError(f"engine: unknown engine {engine!r} (known: fast, abtem)")
    config = DatasetConfig(
        name=str(data.get("name", "dataset")),
        seed=_int(data.get("seed", 0), "seed", low=0),
        images_per_case=_int(data.get("images_per_case", 1), "images_per_case", low=1),
        image_size_px=_int(data.get("image_size_px", 128), "image_size_px", low=16, high=MAX_IMAGE_SIZE_PX),
        engine=engine,
        patch_size_px=_int(patch.get("size_px", DEFAULT_PATCH_SIZE_PX), "patch.size_px", low=4),
        patch_size_a=_positive(patch.get("size_a", DEFAULT_PATCH_SIZE_A), "patch.size_a"),
        hosts=_hosts(data["hosts"]),
        conditions=_conditions(data["imaging"]),
        dose_e_per_a2=_dose(data.get("dose_e_per_a2", [1e4, 1e6])),
        fractions=_fractions(data.get("fractions", "default")),
        realism=_realism(data.get("realism", "default")),
        splits=_splits(data.get("splits") or {}),
        build_splits=_build_splits(data.get("build_splits", list(SPLITS))),
    )
    _check_grid(config)
    return config


def _check_grid(config: DatasetConfig) -> None:
    cases = config.cases  # builds every context: impossible conditions raise here, naming the key
    if not cases:
        raise InputError(
            "config: the case grid is empty (no host with a dopant entry, no condition, or no case in "
            "build_splits)"
        )
    for cond in config.conditions:
        fov = config.image_size_px * cond.pixel_size_a
        if config.patch_size_a > fov:
            raise InputError(
                f"patch.size_a: a {config.patch_size_a:g} Å patch is larger than the {fov:g} Å image "
                f"({config.image_size_px} px × {cond.pixel_size_a:g} Å) of condition {cond.name}"
            )
    _check_case_fractions(config)
    grid = dataclasses.replace(config, build_splits=SPLITS).cases  # selectors name cases of the whole grid
    names = {
        "hosts": {c.host for c in grid},
        "dopants": {c.dopant or "undoped" for c in grid},
        "conditions": {c.condition.name for c in grid},
        "cases": {c.name for c in grid},
    }
    for split, rule in config.splits.items():
        for key in _SELECTOR_KEYS:
            for value in getattr(rule, key):
                if value not in names[key]:
                    raise InputError(
                        f"splits.{split}.{key}: {value!r} names no case in the grid "
                        f"(known: {', '.join(sorted(names[key]))})"
                    )
    from stemsight.realism import RealismRanges

    if isinstance(config.realism, Mapping):
        try:
            RealismRanges(**{k: tuple(v) for k, v in config.realism.items()})
        except TypeError as exc:
            raise InputError(f"realism: {_first_line(exc)}") from None


def _check_case_fractions(config: DatasetConfig) -> None:
    """The fractions each case would simulate with (the highs of ranges), checked before any image is: a
    label that is ambiguous in a host (hBN's 'V') fails here, not after the store is made."""
    from stemsight.datasets.units import case_fractions
    from stemsight.structures.defects import check_fractions

    for case in config.cases:
        context = case.context(None)
        fractions = case_fractions(config.fractions, context)
        highs = {k: (v[1] if isinstance(v, tuple) else v) for k, v in fractions.items()}
        try:
            check_fractions(context.host_spec, highs, context.dopant_site)
        except InputError as exc:
            raise InputError(f"{exc} (case {case.name})") from None


def _cases(config: DatasetConfig) -> tuple[Case, ...]:
    """The grid's cases in order, restricted to `build_splits` (indices count the kept cases)."""
    out = []
    for entry in config.hosts:
        for (dopant, site), cond in itertools.product(entry.dopants, config.conditions):
            probe = Case(len(out), entry.host, entry.phase, dopant, site, cond, "train")
            probe.context(None)  # raises InputError for an impossible context
            split = _split_of(probe, config.splits)
            if split in config.build_splits:
                out.append(dataclasses.replace(probe, split=split))
    return tuple(out)


def _build_splits(value: Any) -> tuple[str, ...]:
    chosen = [str(v) for v in _as_list(value, "build_splits")]
    bad = [v for v in chosen if v not in SPLITS]
    if bad or not chosen:
        raise InputError(f"build_splits: expected some of {', '.join(SPLITS)}, got {value!r}")
    return tuple(s for s in SPLITS if s in chosen)


def _split_of(case: Case, splits: Mapping[str, SplitRule]) -> str:
    for split in ("test", "validation"):
        rule = splits.get(split)
        if rule is not None and (
            case.host in rule.hosts
            or (case.dopant or "undoped") in rule.dopants
            or case.condition.name in rule.conditions
            or case.name in rule.cases
        ):
            return split
    return "train"


def _hosts(value: Any) -> tuple[HostEntry, ...]:
    hosts = _mapping(value, "hosts")
    out = []
    for name, spec in hosts.items():
        host = parse_host(str(name))
        spec = _mapping(spec or {}, f"hosts.{name}")
        _check_keys(spec, ("dopants", "phase"), f"hosts.{name}")
        phase = spec.get("phase", "2H")
        if phase not in ("2H", "1T"):
            raise InputError(f"hosts.{name}.phase: expected 2H or 1T, got {phase!r}")
        dopants = spec.get("dopants", [None])
        if not isinstance(dopants, list):
            raise InputError(f"hosts.{name}.dopants: expected a list, got {dopants!r}")
        entries = []
        for item in dopants:
            entry = _dopant(item, host, f"hosts.{name}.dopants")
            if entry in entries:
                raise InputError(f"hosts.{name}.dopants: {item!r} is listed twice")
            entries.append(entry)
        out.append(HostEntry(host.name, phase, tuple(entries)))
    if len({h.host for h in out}) != len(out):
        raise InputError("hosts: a host is listed twice")
    return tuple(out)


def _dopant(item: Any, host, where: str) -> tuple[str | None, str | None]:
    if item is None or (isinstance(item, str) and item.lower() in ("none", "undoped")):
        return (None, None)
    if not isinstance(item, str):
        raise InputError(f"{where}: expected an element symbol such as 'V' or 'Se:X', got {item!r}")
    element, _, site = item.partition(":")
    element = element.strip()
    try:
        site = site.strip() or infer_dopant_site(host, element)
        ImagingContext(  # checks the element and the site against the host
            host=host.name,
            dopant=element,
            dopant_site=site,
            energy_kev=60,
            convergence_mrad=30,
            detector_inner_mrad=80,
            detector_outer_mrad=200,
            pixel_size_a=0.1,
        )
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    return (element, site)


def _conditions(value: Any) -> tuple[Condition, ...]:
    if isinstance(value, Mapping):
        keys = ("energy_kev", "convergence_mrad", "detector_mrad", "pixel_size_a")
        _check_keys(value, keys, "imaging")
        missing = [k for k in keys if k not in value]
        if missing:
            raise InputError(f"imaging: missing key {missing[0]!r}")
        lists = [_as_list(value[k], f"imaging.{k}") for k in keys]
        if lists[2] and not isinstance(lists[2][0], list | tuple):  # one [inner, outer] pair
            lists[2] = [lists[2]]
        if any(not v for v in lists):
            return ()
        grid = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*lists)]
    elif isinstance(value, list):
        grid = [_mapping(v, f"imaging[{i}]") for i, v in enumerate(value)]
    else:
        raise InputError(f"imaging: expected a grid mapping or a list of conditions, got {value!r}")
    out = []
    for i, cond in enumerate(grid):
        where = f"imaging[{i}]"
        det = cond.get("detector_mrad")
        if not (isinstance(det, list | tuple) and len(det) == 2):
            raise InputError(f"{where}.detector_mrad: expected [inner, outer], got {det!r}")
        try:
            c = Condition(
                energy_kev=_positive(cond.get("energy_kev"), "energy_kev"),
                convergence_mrad=_positive(cond.get("convergence_mrad"), "convergence_mrad"),
                detector_inner_mrad=_number(det[0], "detector_mrad"),
                detector_outer_mrad=_number(det[1], "detector_mrad"),
                pixel_size_a=_positive(cond.get("pixel_size_a"), "pixel_size_a"),
            )
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        if c in out:
            raise InputError(f"{where}: condition {c.name} is listed twice")
        out.append(c)
    return tuple(out)


def _dose(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    values = [value] if not isinstance(value, list) else value
    if len(values) not in (1, 2):
        raise InputError(f"dose_e_per_a2: expected a number or [low, high], got {value!r}")
    low, high = (_positive(v, "dose_e_per_a2") for v in (values * 2)[:2])
    if low > high:
        raise InputError(f"dose_e_per_a2: low {low:g} is above high {high:g}")
    return (low, high)


def _fractions(value: Any) -> Mapping[str, float | tuple[float, float]] | None:
    if value == "default":
        return None
    fractions = _mapping(value, "fractions")
    out: dict[str, float | tuple[float, float]] = {}
    for key, v in fractions.items():
        if isinstance(v, (list, tuple)):
            if len(v) != 2:
                raise InputError(f"fractions.{key}: a range is [low, high], got {len(v)} numbers")
            low, high = (_number(x, f"fractions.{key}") for x in v)
            if not 0 <= low <= high <= 1:
                raise InputError(f"fractions.{key}: need 0 <= low <= high <= 1, got [{low:g}, {high:g}]")
            out[str(key)] = (low, high)
            continue
        f = _number(v, f"fractions.{key}")
        if not 0 <= f <= 1:
            raise InputError(f"fractions.{key}: must be in [0, 1], got {f}")
        out[str(key)] = f
    _check_fraction_sums(out)
    return out


def _check_fraction_sums(fractions: Mapping[str, float | tuple[float, float]]) -> None:
    """Refuse fractions (the highs of ranges) of one sublattice that can add up to more than 1."""
    from stemsight.core.labels import CHALCOGEN_LABELS, METAL_LABELS

    totals: dict[str, float] = {}
    for key, value in fractions.items():
        sub, _, label = key.rpartition(":")
        group = sub or ("metal" if label in METAL_LABELS else "chalcogen" if label in CHALCOGEN_LABELS
                        else "single-element")
        totals[group] = totals.get(group, 0.0) + (value[1] if isinstance(value, tuple) else value)
    for group, total in totals.items():
        if total > 1 + 1e-9:
            raise InputError(f"fractions: the {group} sublattice's defects can add up to {total:g} > 1")


def _realism(value: Any) -> str | Mapping[str, tuple[float, float]]:
    if value in ("default", "off"):
        return value
    ranges = _mapping(value, "realism")
    out = {}
    for key, v in ranges.items():
        pair = v if isinstance(v, list) else [v, v]
        if len(pair) != 2:
            raise InputError(f"realism.{key}: expected [low, high], got {v!r}")
        out[str(key)] = (_number(pair[0], f"realism.{key}"), _number(pair[1], f"realism.{key}"))
    return out


def _splits(value: Any) -> dict[str, SplitRule]:
    splits = _mapping(value, "splits")
    out = {}
    for name, rule in splits.items():
        if name not in ("validation", "test"):
            raise InputError(f"splits: unknown split {name!r} (validation, test; the rest is train)")
        rule = _mapping(rule or {}, f"splits.{name}")
        _check_keys(rule, _SELECTOR_KEYS, f"splits.{name}")
        out[name] = SplitRule(
            **{k: tuple(str(v) for v in _as_list(rule.get(k, []), f"splits.{name}.{k}")) for k in rule}
        )
    return out


def _check_keys(mapping: Mapping, known: Sequence[str], where: str) -> None:
    unknown = [k for k in mapping if k not in known]
    if unknown:
        raise InputError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(known)})")


def _mapping(value: Any, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise InputError(f"{where}: expected a mapping, got {value!r}")
    return value


def _as_list(value: Any, where: str) -> list:
    if isinstance(value, list):
        return value
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return [value]


def _number(value: Any, where: str) -> float:
    if isinstance(value, str):  # PyYAML reads 1e4 and 1.0e4 (no sign in the exponent) as strings
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _positive(value: Any, where: str) -> float:
    number = _number(value, where)
    if number <= 0:
        raise InputError(f"{where}: must be positive, got {value!r}")
    return number


def _int(value: Any, where: str, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{where}: expected an integer >= {low}, got {value!r}")
    if high is not None and value > high:
        raise InputError(f"{where}: expected an integer <= {high} (one image of {value} × {value} px is "
                         f"{value * value * 4 / 1e9:.3g} GB), got {value!r}")
    return value


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
