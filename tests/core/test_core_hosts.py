"""parse_host: MX2 names, graphene and hBN; clear errors for anything else."""

from __future__ import annotations

import pytest

from stemsight.core.errors import InputError
from stemsight.core.hosts import parse_host
from stemsight.core.labels import labels_for, sublattice_labels


@pytest.mark.parametrize(
    ("name", "family", "elements"),
    [
        ("MoS2", "tmd", {"M": "Mo", "X": "S"}),
        ("WSe2", "tmd", {"M": "W", "X": "Se"}),
        ("NbTe2", "tmd", {"M": "Nb", "X": "Te"}),
        ("graphene", "graphene", {"C": "C"}),
        ("Graphene", "graphene", {"C": "C"}),
        ("hBN", "hbn", {"B": "B", "N": "N"}),
        ("h-BN", "hbn", {"B": "B", "N": "N"}),
    ],
)
def test_known_hosts_parse(name, family, elements):
    host = parse_host(name)
    assert host.family == family
    assert host.elements == elements
    assert host.sublattices == tuple(elements)


@pytest.mark.parametrize(
    "name", ["MoO2", "Mo", "", "SS2", "SeTe2", "XxS2", "MoS3", "mos2", "MoS2 ", None, 42]
)
def test_bad_hosts_are_rejected_naming_host(name):
    with pytest.raises(InputError, match="host"):
        parse_host(name)


def test_label_sets_follow_the_lattice_family():
    mos2, graphene = parse_host("MoS2"), parse_host("graphene")
    assert labels_for(mos2) == ("M", "D_M", "V_M", "X2", "V_X", "V_2X", "D_X", "D_2X")
    assert labels_for(graphene) == ("H", "D", "V")
    assert sublattice_labels(mos2, "M") == ("M", "D_M", "V_M")
    assert "V_2X" in sublattice_labels(mos2, "X")
    assert sublattice_labels(parse_host("hBN"), "N") == ("H", "D", "V")
