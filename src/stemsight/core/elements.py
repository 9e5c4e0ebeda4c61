"""Chemical elements: symbol <-> atomic number, with clear errors."""

from __future__ import annotations

from stemsight.core.errors import InputError

# Symbols Z = 1..103 (index = Z); kept here so that `import stemsight` does not import ASE.
_SYMBOLS = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb "
    "Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr"
).split()
_NUMBERS = {s: z for z, s in enumerate(_SYMBOLS) if z > 0}

CHALCOGENS = ("S", "Se", "Te")


def atomic_number(symbol: str, *, what: str = "element") -> int:
    """Atomic number of `symbol` (case-sensitive, e.g. 'Mo'); InputError naming `what` if unknown."""
    try:
        return _NUMBERS[symbol]
    except (KeyError, TypeError):
        raise InputError(f"{what}: unknown element {symbol!r}") from None


def symbol(z: int) -> str:
    """Chemical symbol of atomic number `z` (1..103)."""
    if not 1 <= int(z) < len(_SYMBOLS):
        raise InputError(f"atomic number {z} is outside 1..{len(_SYMBOLS) - 1}")
    return _SYMBOLS[int(z)]


def is_element(symbol_: str) -> bool:
    return symbol_ in _NUMBERS
