"""The fast engine against abTEM (PRISM, converged 0.025 Å sampling) on the same tiny MX2 cell.

Static lattices (deterministic on both sides); `bench/fidelity.py` prints all eight validation cases,
with and without frozen phonons.
"""

import pytest

from stemsight.physics.validation import compare_with_abtem

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("host", "energy_kev", "detector_mrad"),
    [("MoS2", 60, (80, 200)), ("MoS2", 200, (40, 120)), ("WSe2", 200, (40, 120))],
)
def test_fast_engine_matches_abtem(host, energy_kev, detector_mrad):
    result = compare_with_abtem(host, energy_kev=energy_kev, detector_mrad=detector_mrad, frozen_phonons=0)
    assert result.ncc >= 0.99
    assert abs(result.ratio_error) <= 0.05, result.to_dict()
    assert result.seconds_fast < result.seconds_abtem


def test_fast_engine_matches_abtem_with_frozen_phonons():
    """Thermal diffuse scattering on both sides: abTEM with 16 frozen-phonon configurations."""
    result = compare_with_abtem("MoS2", energy_kev=60, detector_mrad=(80, 200), frozen_phonons=16)
    assert result.ncc >= 0.99
    assert abs(result.ratio_error) <= 0.05, result.to_dict()
