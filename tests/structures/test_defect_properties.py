"""Property: whatever the fractions and seed, every label agrees with the atoms on its site."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stemsight.structures import add_defects, graphene, label_sites, mx2_monolayer
from stemsight.structures.occupancy import occupancy_of, site_capacity

PRISTINE = {
    "2H": mx2_monolayer("MoS2", size_a=12),
    "1T": mx2_monolayer("PtSe2", phase="1T", size_a=12),
    "graphene": graphene(size_a=12),
}
LABELS = {
    "2H": (("M", ["D_M", "V_M"]), ("X", ["V_X", "V_2X", "D_X", "D_2X"])),
    "1T": (("M", ["D_M", "V_M"]), ("X", ["V_X", "D_X"])),
    "graphene": (("C", ["D", "V"]),),
}
DOPANT = {"2H": ("Se", "X"), "1T": ("Ir", "M"), "graphene": ("N", "C")}


@st.composite
def cases(draw):
    kind = draw(st.sampled_from(sorted(PRISTINE)))
    dopant, dopant_site = DOPANT[kind]
    fractions = {}
    for sublattice, labels in LABELS[kind]:
        budget = 1.0
        for label in draw(st.lists(st.sampled_from(labels), unique=True)):
            if label.startswith("D") and sublattice != dopant_site:
                continue
            fraction = draw(st.floats(0.0, budget))
            budget -= fraction
            fractions[f"{sublattice}:{label}"] = fraction
    return kind, dopant, fractions, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_labels_consistent_with_atoms(case):
    kind, dopant, fractions, seed = case
    s = add_defects(PRISTINE[kind], dopant=dopant, fractions=fractions, rng=seed)
    site = s.atoms.arrays["site"]
    assert site.dtype == np.int64
    assert site.min(initial=0) >= 0 and site.max(initial=-1) < len(s.sites)
    xy = np.stack([s.sites.x_a[site], s.sites.y_a[site]], axis=1)
    assert np.allclose(s.atoms.positions[:, :2], xy)
    assert np.array_equal(label_sites(s.atoms, s.sites, s.host, dopant, phase=s.phase or "2H"), s.sites.label)
    host_z = {"Mo": 42, "S": 16, "Pt": 78, "Se": 34, "C": 6}
    dopant_z = {"Se": 34, "Ir": 77, "N": 7}[dopant]
    for i in range(len(s.sites)):
        sub = str(s.sites.sublattice[i])
        numbers = s.atoms.numbers[site == i]
        n_host = int((numbers == host_z[s.host.elements[sub]]).sum())
        n_dopant = int((numbers == dopant_z).sum())
        assert (n_host, n_dopant) == occupancy_of(str(s.sites.label[i]), s.host, sub, s.phase or "2H")
        assert len(numbers) <= site_capacity(s.host, sub, s.phase or "2H")
