"""datasets.torch_dataset: PatchDataset streams store patches; ChunkGroupedSampler keeps chunks together."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader

import stemsight.datasets.store as store_module
from stemsight.core.errors import InputError
from stemsight.datasets.build import build_dataset
from stemsight.datasets.config import SPLITS, load_config
from stemsight.datasets.store import open_store
from stemsight.datasets.torch_dataset import ChunkGroupedSampler, PatchDataset

CHUNK = 128  # patches per chunk of the test store: about 13 chunks instead of one


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The tiny example store (about 1 600 patches), built once with small chunks."""
    path = tmp_path_factory.mktemp("torch_dataset") / "tiny.zarr"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store_module, "PATCH_CHUNK", CHUNK)
        build_dataset(load_config("examples/datasets/tiny.yaml"), path, workers=0, progress=False)
    return path


@pytest.fixture(scope="module")
def direct(store):
    """Every patch array of the store, read whole with zarr."""
    root = open_store(store)
    assert root["patches/patch"].chunks[0] == CHUNK
    return {name: root[f"patches/{name}"][:] for name in
            ("patch", "context", "label", "sublattice", "image", "case", "split")}


def _stack(ds, order):
    items = [ds[int(i)] for i in order]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


# -- dataset ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("split", [None, *SPLITS])
def test_items_equal_the_arrays_read_directly(store, direct, split):
    ds = PatchDataset(store, split=split)
    selected = np.ones(len(direct["label"]), bool) if split is None else (
        direct["split"] == SPLITS.index(split))
    assert len(ds) == selected.sum() > 0
    got = _stack(ds, range(len(ds)))
    p = ds.patch_size_px
    assert got["patch"].shape == (len(ds), 1, p, p) and got["patch"].dtype == torch.float32
    np.testing.assert_array_equal(got["patch"][:, 0].numpy(), direct["patch"][selected].astype(np.float32))
    np.testing.assert_array_equal(got["context"].numpy(), direct["context"][selected])
    for key in ("label", "sublattice", "image", "case"):
        assert got[key].dtype == torch.int64 and got[key].shape == (len(ds),)
        np.testing.assert_array_equal(got[key].numpy(), direct[key][selected])
    assert got["context"].shape[1] == len(ds.context_features)
    counts = ds.label_counts()
    assert tuple(counts) == ds.labels
    labels = direct["label"][selected]
    assert counts == {name: int((labels == code).sum()) for code, name in enumerate(ds.labels)}


def test_splits_are_disjoint_and_cover_every_patch(store, direct):
    parts = [set(PatchDataset(store, split=s).indices.tolist()) for s in SPLITS]
    assert all(parts)
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == len(direct["label"])
    for split, part in zip(SPLITS, parts, strict=True):  # each part holds only its own split code
        assert set(np.unique(direct["split"][sorted(part)])) == {SPLITS.index(split)}


def test_negative_and_out_of_range_indices(store, direct):
    ds = PatchDataset(store, split="validation")
    last = direct["patch"][ds.indices[-1]].astype(np.float32)
    np.testing.assert_array_equal(ds[-1]["patch"][0].numpy(), last)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_pickling_drops_the_open_group_and_reopens_it(store):
    ds = PatchDataset(store, split="train")
    first = ds[3]
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._root is None and not copy.chunk_decodes
    again = copy[3]
    assert copy._root is not None
    for key in first:
        assert torch.equal(first[key], again[key])


def test_incomplete_store_is_refused_unless_allowed(store, tmp_path):
    partial = tmp_path / "partial.zarr"
    shutil.copytree(store, partial)
    root = zarr.open_group(str(partial), mode="r+")
    root.attrs["build"] = dict(root.attrs["build"], complete=False)
    with pytest.raises(InputError, match="not complete"):
        PatchDataset(partial)
    assert len(PatchDataset(partial, allow_incomplete=True)) == len(PatchDataset(store))


def test_bad_split_and_non_store_are_refused(store, tmp_path):
    with pytest.raises(InputError, match="known splits: train, validation, test"):
        PatchDataset(store, split="training")
    with pytest.raises(InputError, match="not a stemsight dataset store"):
        PatchDataset(tmp_path)


# -- chunk cache --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("split", [None, "test"])
def test_sampler_order_decodes_each_chunk_once(store, split):
    ds = PatchDataset(store, split=split)
    n_chunks = len(np.unique(ds.chunk_index))
    assert n_chunks >= 5
    for i in ChunkGroupedSampler(ds, seed=1):
        ds[i]
    streamed = ("patch", "context", "sublattice", "image", "case")
    assert dict(ds.chunk_decodes) == dict.fromkeys(streamed, n_chunks)


def test_plain_random_order_decodes_many_more_chunks(store):
    ds = PatchDataset(store)
    n_chunks = len(np.unique(ds.chunk_index))
    for i in np.random.default_rng(0).permutation(len(ds))[:200]:
        ds[int(i)]
    assert ds.chunk_decodes["patch"] > 10 * n_chunks  # the cache alone does not make random order cheap


# -- sampler ------------------------------------------------------------------------------------------------
def test_sampler_epochs_are_permutations_that_differ_and_repeat(store):
    ds = PatchDataset(store)
    sampler = ChunkGroupedSampler(ds, seed=7)
    orders = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    for order in orders:
        assert len(order) == len(sampler) == len(ds)
        assert sorted(order) == list(range(len(ds)))
    assert orders[0] != orders[1]
    assert orders[0] == orders[2]
    twin = ChunkGroupedSampler(ds, seed=7)
    assert list(twin) == orders[0]
    assert list(ChunkGroupedSampler(ds, seed=8)) != orders[0]
    assert list(ChunkGroupedSampler(ds, shuffle=False)) == list(range(len(ds)))


def test_sampler_keeps_chunks_together_in_random_order(store):
    ds = PatchDataset(store)
    chunk = ds.chunk_index
    order = np.array(list(ChunkGroupedSampler(ds, seed=3)))
    runs = chunk[order][np.r_[True, np.diff(chunk[order]) != 0]]
    assert sorted(runs.tolist()) == sorted(set(chunk.tolist()))  # each chunk is one contiguous run
    assert runs.tolist() != sorted(runs.tolist())  # and the chunks are shuffled
    first = order[chunk[order] == runs[0]]
    assert first.tolist() != sorted(first.tolist())  # so are the items inside a chunk


@pytest.mark.parametrize("world_size", [2, 3, 5])
def test_ranks_get_disjoint_equal_shares_that_cover_everything(store, world_size):
    ds = PatchDataset(store, split="test")
    n = len(ds)
    shares = []
    for rank in range(world_size):
        sampler = ChunkGroupedSampler(ds, seed=2, rank=rank, world_size=world_size)
        sampler.set_epoch(4)
        shares.append(list(sampler))
    per_rank = -(-n // world_size)
    assert all(len(share) == per_rank for share in shares)
    everything = [i for share in shares for i in share]
    assert set(everything) == set(range(n))
    assert len(everything) - len(set(everything)) == per_rank * world_size - n  # only the padding repeats
    whole = ChunkGroupedSampler(ds, seed=2)
    whole.set_epoch(4)
    assert everything[:n] == list(whole)  # the shares are slices of the same epoch order


def test_sampler_rejects_bad_arguments(store):
    ds = PatchDataset(store, split="validation")
    with pytest.raises(ValueError, match="rank"):
        ChunkGroupedSampler(ds, rank=2, world_size=2)
    with pytest.raises(ValueError, match="world_size"):
        ChunkGroupedSampler(ds, world_size=0)
    with pytest.raises(ValueError, match="seed"):
        ChunkGroupedSampler(ds, seed=-1)


# -- DataLoader ---------------------------------------------------------------------------------------------
def test_dataloader_with_worker_processes(store, direct):
    ds = PatchDataset(store, split="train")
    ds[0]  # the group is open in this process before the workers start
    sampler = ChunkGroupedSampler(ds, seed=5)
    loader = DataLoader(ds, batch_size=64, sampler=sampler, num_workers=2)
    batches = list(loader)
    order = np.array(list(sampler))
    glob = ds.indices[order]
    patch = torch.cat([b["patch"] for b in batches])
    label = torch.cat([b["label"] for b in batches])
    assert patch.shape == (len(ds), 1, ds.patch_size_px, ds.patch_size_px)
    np.testing.assert_array_equal(patch[:, 0].numpy(), direct["patch"][glob].astype(np.float32))
    np.testing.assert_array_equal(label.numpy(), direct["label"][glob])
    np.testing.assert_array_equal(torch.cat([b["image"] for b in batches]).numpy(), direct["image"][glob])
