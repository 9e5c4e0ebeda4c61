"""Random-number helpers: randomness is an argument, never global state."""

from __future__ import annotations

import numpy as np

RngLike = None | int | np.random.Generator | np.random.SeedSequence


def as_rng(rng: RngLike = None) -> np.random.Generator:
    """Normalise None / int / SeedSequence / Generator to a `numpy.random.Generator`."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def spawn_seeds(master: int, n: int) -> list[np.random.SeedSequence]:
    """`n` independent child seeds of `master`; item i always gets the same seed, whatever the chunking."""
    return np.random.SeedSequence(master).spawn(n)


def child_rngs(rng: RngLike, names: tuple[str, ...]) -> dict[str, np.random.Generator]:
    """Independent named generators drawn from one parent, so that adding a draw in one stage does not
    shift the random stream of another (e.g. the defect layout and the noise)."""
    parent = as_rng(rng)
    seeds = np.random.SeedSequence(parent.integers(0, 2**63 - 1)).spawn(len(names))
    return {name: np.random.default_rng(seed) for name, seed in zip(names, seeds, strict=True)}
