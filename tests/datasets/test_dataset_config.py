"""Case-grid configs: resolution, splits by case, and one-line errors for bad configs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from stemsight.cli.main import main
from stemsight.core.errors import InputError
from stemsight.datasets.config import config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "examples/datasets/tiny.yaml"
FULL = ROOT / "examples/datasets/full.yaml"


def tiny_dict() -> dict:
    return yaml.safe_load(TINY.read_text())


def test_tiny_grid_is_hosts_times_dopants_times_conditions():
    config = load_config(TINY)
    assert len(config.cases) == 3 * 2 * 2
    assert config.n_units == 24
    names = [c.name for c in config.cases]
    assert len(set(names)) == len(names)
    assert names[0] == "MoS2:V@M/60kV_30mrad_80-200mrad_0.12A"
    assert {c.dopant_site for c in config.cases if c.dopant == "Se"} == {"X"}  # inferred from chemistry
    assert any(c.dopant is None for c in config.cases)


def test_full_grid_has_at_least_576_tmd_cases_and_six_conditions():
    config = load_config(FULL)
    tmd = [c for c in config.cases if c.host != "graphene"]
    assert len({c.host for c in tmd}) >= 4
    assert len(config.conditions) >= 6
    assert len(tmd) >= 4 * 24 * 6


def test_splits_hold_out_whole_dopants_and_conditions():
    config = load_config(TINY)
    by_split = {s: [c for c in config.cases if c.split == s] for s in ("train", "validation", "test")}
    train = by_split["train"]
    assert train and by_split["validation"] and by_split["test"]
    assert not any(c.dopant == "Se" for c in train)  # held-out dopant
    assert not any(c.condition.energy_kev == 80 for c in train)  # held-out condition
    assert all(c.dopant == "N" for c in by_split["validation"])
    # test wins over validation: N at 80 kV matches both rules
    assert {c.split for c in config.cases if c.dopant == "N" and c.condition.energy_kev == 80} == {"test"}


def test_resolved_config_round_trips_with_the_same_digest():
    config = load_config(TINY)
    again = config_from_dict(config.to_dict())
    assert again.digest() == config.digest()
    assert [c.name for c in again.cases] == [c.name for c in config.cases]
    changed = tiny_dict()
    changed["seed"] = 1
    assert config_from_dict(changed).digest() != config.digest()


def test_numbers_written_without_an_exponent_sign_are_read():
    data = tiny_dict()
    data["dose_e_per_a2"] = ["1e4", "1.0e6"]  # what PyYAML gives for 1e4 and 1.0e6
    assert config_from_dict(data).dose_e_per_a2 == (1e4, 1e6)


def _with(**changes) -> dict:
    data = tiny_dict()
    for dotted, value in changes.items():
        node = data
        keys = dotted.split("__")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return data


BAD = [
    (_with(hosts={"XyS2": {"dopants": ["V"]}}), "host"),
    (_with(hosts={"MoS2": {"dopants": ["Qq"]}}), "Qq"),
    (_with(hosts={"MoS2": {"dopants": ["Mo"]}}), "host element"),
    (_with(hosts={}), "empty"),
    (_with(imaging__energy_kev=[]), "empty"),
    (_with(splits={"test": {"dopants": ["Re"]}}), "splits.test.dopants: 'Re' names no case"),
    (_with(splits={"test": {"cases": ["MoS2:V@M/nowhere"]}}), "splits.test.cases"),
    (_with(splits={"holdout": {"dopants": ["V"]}}), "unknown split"),
    (_with(patch={"size_px": 24, "size_a": 40.0}), "patch.size_a"),
    (_with(hosst={}), "unknown key 'hosst'"),
    (_with(dose_e_per_a2=[1e6, 1e4]), "dose_e_per_a2"),
    (_with(imaging__detector_mrad=[[200, 80]]), "detector_inner_mrad"),
    (_with(imaging__energy_kev=[-60]), "energy_kev"),
    (_with(images_per_case=0), "images_per_case"),
    (_with(realism={"jitter_px": [0, 1]}), "realism"),
    (_with(fractions={"D_M": 2.0}), "fractions.D_M"),
    (_with(fractions={"D_X": [0.5, 0.1]}), "fractions.D_X: need 0 <= low <= high <= 1"),
    (_with(fractions={"D_X": [0.1, 0.2, 0.3]}), "fractions.D_X: a range is [low, high]"),
    (_with(fractions={"D_X": [0.0, 0.7], "V_X": 0.4}), "chalcogen sublattice's defects can add up to 1.1"),
    # a label two sublattices of a host share fails before any image is simulated, naming the case
    (_with(hosts={"hBN": {"dopants": ["O"]}}, fractions={"V": 0.05}), "'V' is ambiguous in hBN"),
]


@pytest.mark.parametrize(("data", "needle"), BAD, ids=[n for _, n in BAD])
def test_bad_configs_raise_input_errors_naming_the_problem(data, needle):
    with pytest.raises(InputError) as info:
        config_from_dict(data)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_cli_bad_config_is_exit_2_with_one_line_and_no_store(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with(splits={"test": {"dopants": ["Re"]}})))
    out = tmp_path / "store.zarr"
    assert main(["dataset", "build", str(path), "--out", str(out), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'Re' names no case" in err and str(path) in err
    assert not out.exists()


def test_cli_unreadable_yaml_is_exit_2(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("hosts: [MoS2\n  imaging: {")
    assert main(["dataset", "build", str(path), "--out", str(tmp_path / "s.zarr")]) == 2
    assert "not valid YAML" in capsys.readouterr().err


@settings(max_examples=40, deadline=None)
@given(
    energies=st.lists(st.sampled_from([60, 80, 100, 200, 300]), min_size=1, max_size=3, unique=True),
    pixels=st.lists(st.sampled_from([0.08, 0.1, 0.12]), min_size=1, max_size=2, unique=True),
    images=st.integers(1, 5),
)
def test_grid_size_is_the_product_of_its_axes(energies, pixels, images):
    data = copy.deepcopy(_BASE)
    data["imaging"]["energy_kev"] = energies
    data["imaging"]["pixel_size_a"] = pixels
    data["images_per_case"] = images
    config = config_from_dict(data)
    assert len(config.cases) == 3 * 2 * len(energies) * len(pixels)
    assert config.n_units == len(config.cases) * images
    assert len({c.condition.name for c in config.cases}) == len(energies) * len(pixels)


_BASE = {k: v for k, v in tiny_dict().items() if k != "splits"}


def test_build_splits_keep_only_the_chosen_cases():
    data = tiny_dict()
    data["build_splits"] = ["test"]
    config = config_from_dict(data)
    full = load_config(TINY)
    assert [c.name for c in config.cases] == [c.name for c in full.cases if c.split == "test"]
    assert [c.index for c in config.cases] == list(range(len(config.cases)))
    assert config.digest() != full.digest()
    data["build_splits"] = ["holdout"]
    with pytest.raises(InputError, match="build_splits"):
        config_from_dict(data)
