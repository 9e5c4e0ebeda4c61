"""Thermal vibration amplitudes at room temperature.

rms displacement per axis ⟨u²⟩^½ in Å, from Debye–Waller factors B = 8π²⟨u²⟩ typical of room-temperature
layered crystals (e.g. B ≈ 0.3–0.5 Å² for Mo/W and 0.4–0.6 Å² for S/Se in TMDs; graphene/hBN in-plane
B ≈ 0.3–0.4 Å²). Elements without an entry get an estimate from the mass (lighter atoms vibrate more).
"""

from __future__ import annotations

import math

from stemsight.core.elements import atomic_number

_B_FACTOR_A2 = {
    "C": 0.35, "B": 0.35, "N": 0.35, "O": 0.6, "Si": 0.45, "S": 0.50, "Se": 0.45, "Te": 0.50,
    "Mo": 0.35, "W": 0.30, "Nb": 0.40, "Ta": 0.35, "V": 0.45, "Re": 0.30, "Ti": 0.45, "Zr": 0.40,
    "Hf": 0.35, "Pt": 0.35, "Pd": 0.40, "Sn": 0.55, "Cr": 0.40,
}  # fmt: skip


def b_factor_a2(element: str) -> float:
    """Debye–Waller B factor (Å²) at room temperature."""
    z = atomic_number(element)
    if element in _B_FACTOR_A2:
        return _B_FACTOR_A2[element]
    return 0.3 + 0.3 * math.exp(-z / 30)


def rms_displacement_a(element: str) -> float:
    """rms displacement per axis (Å): √(B / 8π²)."""
    return math.sqrt(b_factor_a2(element) / (8 * math.pi**2))
