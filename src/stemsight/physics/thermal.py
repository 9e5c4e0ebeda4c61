"""Thermal vibration amplitudes at room temperature.

Per-axis (1D) rms displacement ⟨u_x²⟩^½ in Å, from Debye–Waller factors B = 8π²⟨u²⟩: Peng, Ren, Dudarev &
Whelan, Acta Cryst. A52 (1996) 456 for elemental crystals, and refinements of the layered dichalcogenides
(e.g. Schönfeld, Huang & Moss, Acta Cryst. B39 (1983) 404 for MoS2: B(Mo) ≈ 0.3 Å², B(S) ≈ 0.5 Å²) and of
graphite / hBN; in-plane values for monolayers, rounded to 0.005 Å. Both image engines use this table.
"""

from __future__ import annotations

import math

from stemsight.core.elements import atomic_number

RMS_DISPLACEMENT_A: dict[str, float] = {
    "H": 0.15,
    "B": 0.065,
    "C": 0.07,
    "N": 0.065,
    "O": 0.085,
    "F": 0.085,
    "Al": 0.09,
    "Si": 0.075,
    "P": 0.08,
    "S": 0.08,
    "Cl": 0.09,
    "Ti": 0.07,
    "V": 0.07,
    "Cr": 0.065,
    "Mn": 0.07,
    "Fe": 0.065,
    "Co": 0.065,
    "Ni": 0.065,
    "Cu": 0.085,
    "Zn": 0.095,
    "Ga": 0.09,
    "Ge": 0.08,
    "As": 0.08,
    "Se": 0.075,
    "Zr": 0.065,
    "Nb": 0.065,
    "Mo": 0.06,
    "Ru": 0.055,
    "Rh": 0.06,
    "Pd": 0.07,
    "Ag": 0.09,
    "Sn": 0.09,
    "Sb": 0.085,
    "Te": 0.08,
    "I": 0.09,
    "Hf": 0.06,
    "Ta": 0.06,
    "W": 0.055,
    "Re": 0.055,
    "Os": 0.05,
    "Ir": 0.055,
    "Pt": 0.065,
    "Au": 0.085,
}

FALLBACK_RMS_DISPLACEMENT_A = 0.075  # elements without an entry: about the table's median


def rms_displacement_a(element: str) -> float:
    """rms displacement per axis (Å) at room temperature."""
    atomic_number(element)
    return RMS_DISPLACEMENT_A.get(element, FALLBACK_RMS_DISPLACEMENT_A)


def b_factor_a2(element: str) -> float:
    """Debye–Waller B factor (Å²): 8π²⟨u²⟩."""
    return 8 * math.pi**2 * rms_displacement_a(element) ** 2
