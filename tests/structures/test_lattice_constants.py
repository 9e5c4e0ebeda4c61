import math

import pytest

from stemsight.core.errors import InputError
from stemsight.structures import chalcogen_separation_a, lattice_constant_a, lattice_constants
from stemsight.structures.lattice_constants import _TABLES, estimate_constants

METALS = "Mo W Nb Ta V Re Ti Zr Hf Pt Pd Sn Cr".split()


@pytest.mark.parametrize(
    ("host", "phase", "a", "d"),
    [("MoS2", "2H", 3.16, 3.17), ("WSe2", "2H", 3.28, 3.34), ("TiS2", "1T", 3.41, 2.85)],
)
def test_known_values(host, phase, a, d):
    assert lattice_constant_a(host, phase) == pytest.approx(a, abs=0.01)
    assert chalcogen_separation_a(host, phase) == pytest.approx(d, abs=0.01)
    assert not lattice_constants(host, phase).estimated


def test_sheets():
    assert lattice_constant_a("graphene") == 2.46
    assert lattice_constant_a("hBN") == 2.50
    with pytest.raises(InputError, match="no chalcogen"):
        chalcogen_separation_a("graphene")


@pytest.mark.parametrize("phase", ["2H", "1T"])
@pytest.mark.parametrize("metal", METALS)
@pytest.mark.parametrize("chalcogen", ["S", "Se", "Te"])
def test_every_pair_has_plausible_constants(metal, chalcogen, phase):
    c = lattice_constants(f"{metal}{chalcogen}2", phase)
    assert 2.8 < c.a_a < 4.3
    assert 2.2 < c.d_a < 3.9
    # projected M–X and vertical offsets give a bond length of 2.2–2.9 Å
    assert 2.2 < math.hypot(c.a_a / math.sqrt(3), c.d_a / 2) < 2.9


def test_unknown_pair_is_estimated_and_flagged():
    c = lattice_constants("FeS2", "2H")
    assert c.estimated and "estimated" in c.source
    assert 2.8 < c.a_a < 3.4


@pytest.mark.parametrize("phase", ["2H", "1T"])
def test_estimate_leave_one_out_within_six_percent(phase):
    for name, (a, _) in _TABLES[phase].items():
        assert estimate_constants(name, phase, exclude=name).a_a == pytest.approx(a, rel=0.06), name


def test_bad_phase():
    with pytest.raises(InputError, match="phase"):
        lattice_constant_a("MoS2", "3R")
