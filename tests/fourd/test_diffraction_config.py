"""The 4D case grid: the shipped recipe loads, numbers read as YAML writes them, bad settings are named."""

from pathlib import Path

import pytest

from stemsight.core.errors import InputError
from stemsight.datasets.diffraction_config import config_from_dict, load_diffraction_config

RECIPE = Path(__file__).resolve().parents[2] / "examples" / "fourd" / "knn.yaml"


def test_the_shipped_recipe():
    config = load_diffraction_config(RECIPE)
    assert config.n_units == 80 and config.n_positions == 16
    assert [config.unit_class(u) for u in range(9)] == [0, 1, 2, 3, 4, 5, 6, 7, 0]
    assert config.unit_split(0) == "train" and config.unit_split(79) == "validation"
    assert config.replace(seed=3).digest() != config.digest()


def test_yaml_exponents_without_a_sign_are_numbers(tmp_path):
    # PyYAML reads 2e2 and 1e0 as strings; the dataset config reads them as numbers, so does this one
    path = tmp_path / "grid.yaml"
    path.write_text("energy_kev: 2e2\ntilt_mrad: 1e0\nthicknesses_a: [1e2, 2e2]\n")
    config = load_diffraction_config(path)
    assert (config.energy_kev, config.tilt_mrad, config.thicknesses_a) == (200.0, 1.0, (100.0, 200.0))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"energy_kev": -1}, "energy_kev: must be positive"),
        ({"tilt_mrad": -0.5}, "tilt_mrad: must be >= 0"),
        ({"specimens_per_class": 2, "validation_specimens": 2}, "at least one training specimen"),
        ({"thicknesses_a": [200, 100]}, "increasing"),
        ({"grid": {"gpts": 40, "sampling_mrad": 2}}, "odd"),
        ({"convergence_mrad": 45}, "bright-field disc"),
        ({"colour": "red"}, "unknown setting"),
        ({"seed": True}, "seed: expected an integer"),
    ],
)
def test_bad_settings_are_named(change, message):
    with pytest.raises(InputError, match=message):
        config_from_dict(change)
