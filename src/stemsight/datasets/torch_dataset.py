"""PyTorch access to a patch store: a map-style dataset that streams patches, and a chunk-grouped sampler.

`PatchDataset` reads one split of a store (see `stemsight.datasets.store`) without loading its patches:
only the 1-byte `split` and `label` arrays are read whole (to select indices and count labels). Every other
array is read a chunk at a time, and the last decoded chunk of each array is kept, so that consecutive
indices decode each chunk once. The zarr group is opened on first access (again after unpickling or in a
forked process), so the dataset works in DataLoader worker processes.

`ChunkGroupedSampler` shuffles the order of the chunks and the order inside each chunk, so that a shuffled
epoch still decodes each chunk about once; with `world_size > 1` it gives each rank a contiguous, disjoint
share of equal length (padded by wrapping, like `DistributedSampler`).

With a DataLoader of W workers, batches go round-robin to the workers and each keeps its own cache, so a
chunk is decoded at most about W times per epoch (once when batches are as long as chunks).

This module imports torch; `stemsight.datasets` does not import it.
"""

from __future__ import annotations

import operator
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from stemsight.core.errors import InputError
from stemsight.datasets.store import open_store, reading

# arrays read a chunk at a time -> dtype of the tensor returned
_STREAMED = {
    "patch": torch.float32,
    "context": torch.float32,
    "sublattice": torch.int64,
    "image": torch.int64,
    "case": torch.int64,
}


class PatchDataset(Dataset):
    """Site patches of a store, one split or all.

    Item i is a dict: `patch` float32 (1, P, P), `context` float32 (F,), and int64 scalars `label`
    (code into `labels`), `sublattice`, `image`, `case`. Items follow store order within the split.

    store: path of a store. split: None (every patch) or one of the store's splits ("train",
    "validation", "test"). allow_incomplete: read a store whose build has not finished (only the patches
    appended so far); without it such a store raises InputError.
    """

    def __init__(
        self, store: str | Path, *, split: str | None = None, allow_incomplete: bool = False
    ) -> None:
        self.path = Path(store)
        self.split = split
        root = open_store(self.path)
        attrs = dict(root.attrs)
        if not attrs.get("build", {}).get("complete", False) and not allow_incomplete:
            raise InputError(f"{self.path}: the build is not complete (finish it with --resume, "
                             f"or pass allow_incomplete=True)")
        with reading(self.path):
            self._labels = tuple(attrs["labels"])
            self._context_features = tuple(attrs["context_features"])
            self._indices = _select(root, split, path=self.path)
            self._label = root["patches/label"][:][self._indices]  # int8 codes; 1 byte per patch
            patch = root["patches/patch"]
            self._patch_size_px = int(patch.shape[1])
            self._patch_size_a = float(attrs["config"]["patch"]["size_a"])
            self._chunk_length = int(patch.chunks[0])
            self.chunk_decodes: Counter[str] = Counter()  # chunks decoded per array (cache misses)
            self._adopt(root)

    # -- lazy opening -----------------------------------------------------------------------------------
    def _adopt(self, root) -> None:
        self._root = root
        self._pid = os.getpid()
        self._arrays = {name: root[f"patches/{name}"] for name in _STREAMED}
        self._rows_per_chunk = {name: int(arr.chunks[0]) for name, arr in self._arrays.items()}
        self._cache: dict[str, tuple[int, np.ndarray]] = {}

    def _ensure_open(self) -> None:
        if self._root is None or self._pid != os.getpid():
            self._adopt(open_store(self.path))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_root=None, _arrays=None, _rows_per_chunk=None, _cache={}, chunk_decodes=Counter())
        return state

    # -- items ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        i = operator.index(i)
        n = len(self._indices)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} patches")
        g = int(self._indices[i])
        self._ensure_open()
        item = {name: torch.as_tensor(self._row(name, g), dtype=dtype) for name, dtype in _STREAMED.items()}
        item["patch"] = item["patch"].unsqueeze(0)
        item["label"] = torch.tensor(int(self._label[i]), dtype=torch.int64)
        return item

    def _row(self, name: str, g: int) -> np.ndarray:
        length = self._rows_per_chunk[name]
        chunk = g // length
        cached = self._cache.get(name)
        if cached is None or cached[0] != chunk:
            with reading(self.path):
                cached = (chunk, self._arrays[name][chunk * length : (chunk + 1) * length])
            self._cache[name] = cached
            self.chunk_decodes[name] += 1
        return np.array(cached[1][g - chunk * length])  # a copy, so the tensor does not pin the chunk

    # -- description ------------------------------------------------------------------------------------
    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def context_features(self) -> tuple[str, ...]:
        return self._context_features

    @property
    def patch_size_px(self) -> int:
        return self._patch_size_px

    @property
    def patch_size_a(self) -> float:
        """Side of the field a patch covers, Å."""
        return self._patch_size_a

    @property
    def indices(self) -> np.ndarray:
        """(len,) store index of each item (read-only view)."""
        view = self._indices.view()
        view.flags.writeable = False
        return view

    @property
    def chunk_length(self) -> int:
        """Patches per chunk of the `patch` array."""
        return self._chunk_length

    @property
    def chunk_index(self) -> np.ndarray:
        """(len,) chunk of the `patch` array that holds each item (non-decreasing)."""
        return self._indices // self._chunk_length

    def label_counts(self) -> dict[str, int]:
        """Patches per label in this split (every label of the store, zero included)."""
        counts = np.bincount(self._label, minlength=len(self._labels))
        return {name: int(c) for name, c in zip(self._labels, counts, strict=True)}


def _select(root, split: str | None, *, path: Path) -> np.ndarray:
    """Store indices of the patches in `split` (all when None), ascending."""
    splits = tuple(root.attrs["splits"])
    lengths = {name: root[f"patches/{name}"].shape[0] for name in (*_STREAMED, "label", "split")}
    if len(set(lengths.values())) != 1:
        raise InputError(f"{path}: patch arrays of different lengths {lengths}")
    n_total = lengths["label"]
    dtype = np.int32 if n_total < 2**31 else np.int64
    if split is None:
        return np.arange(n_total, dtype=dtype)
    if split not in splits:
        raise InputError(f"split {split!r}: unknown; known splits: {', '.join(splits)}")
    return np.flatnonzero(root["patches/split"][:] == splits.index(split)).astype(dtype)


class ChunkGroupedSampler(Sampler[int]):
    """Indices of a `PatchDataset` in chunk-grouped random order (see the module docstring).

    The order depends only on `seed` and the epoch (`set_epoch`). shuffle=False gives store order. With
    `world_size > 1`, rank r gets items [r·m, (r+1)·m) of the epoch's order padded by wrapping to
    m·world_size, m = ceil(len / world_size): contiguous shares keep each rank on its own chunks.
    """

    def __init__(self, dataset: PatchDataset, *, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
        if not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size: expected an integer >= 1, got {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank: expected 0 <= rank < world_size={world_size}, got {rank!r}")
        self._chunk_index = np.asarray(dataset.chunk_index)
        self.seed, self.shuffle, self.rank, self.world_size = seed, shuffle, rank, world_size
        self.epoch = 0
        self.num_samples = -(-len(self._chunk_index) // world_size)

    def set_epoch(self, epoch: int) -> None:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch: expected an integer >= 0, got {epoch!r}")
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def epoch_order(self) -> np.ndarray:
        """(len(dataset),) every index once: chunks in random order, each chunk's items in random order."""
        n = len(self._chunk_index)
        if not self.shuffle:
            return np.arange(n)
        rng = np.random.default_rng([self.seed, self.epoch])
        chunks, chunk_of = np.unique(self._chunk_index, return_inverse=True)
        chunk_rank = rng.permutation(len(chunks))[chunk_of]
        return np.lexsort((rng.random(n), chunk_rank))

    def __iter__(self) -> Iterator[int]:
        order = self.epoch_order()
        if len(order) == 0:
            return iter(())
        padded = np.resize(order, self.num_samples * self.world_size)  # repeats from the start
        share = padded[self.rank * self.num_samples : (self.rank + 1) * self.num_samples]
        return iter(share.tolist())
