"""The patch store: a Zarr (v3) group written in unit order, appendable, resumable.

Layout (N patches, n images; codes index the lists in the root attributes)::

    STORE.zarr/
      zarr.json                 attrs: format, config (resolved), config_digest, labels, sublattices,
                                splits, context_schema, context_features, cases, build (the manifest)
      config.yaml               the resolved config, for people
      patches/patch             (N, P, P) float16  site patches from the normalised image
      patches/context           (N, F) float32     context vector of the patch's image
      patches/label             (N,) int8          code into attrs.labels
      patches/sublattice        (N,) int8          code into attrs.sublattices
      patches/x_px, y_px        (N,) float32       site position in its image (px)
      patches/image, case       (N,) int32         image index, case index
      patches/split             (N,) int8          code into attrs.splits
      images/image              (n, H, W) float32  the full image (raw detector units)
      images/case               (n,) int32
      images/dose               (n,) float64       e/Å² (NaN: none)
      images/site_start         (n,) int64         first patch of the image (its sites are a slice)
      images/site_count         (n,) int32
      .staging/unit-*.npz       finished units not yet appended (removed when the build completes)

Image i is work unit i. Units are appended strictly in unit order, whatever order workers finish them in,
so the arrays do not depend on the number of workers. The manifest (`attrs.build`: units written, patch
count) is updated after each append; on resume the arrays are cut back to it, staged units are kept, and
only the missing units run again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from stemsight import __version__
from stemsight.core.errors import InputError
from stemsight.datasets.config import SPLITS, DatasetConfig
from stemsight.datasets.context_features import ALL_LABELS, CONTEXT_FEATURES, CONTEXT_SCHEMA
from stemsight.datasets.patches import PATCH_NORMALISATION, check_patch_normalisation
from stemsight.datasets.units import SUBLATTICES

STORE_FORMAT = "stemsight.patches.v1"
PATCH_CHUNK = 2048  # patches per chunk
_STAGING = ".staging"

# array name -> dtype (patch arrays are chunked by PATCH_CHUNK, image arrays by image)
_PATCH_ARRAYS = {
    "patch": "float16",
    "context": "float32",
    "label": "int8",
    "sublattice": "int8",
    "x_px": "float32",
    "y_px": "float32",
    "image": "int32",
    "case": "int32",
    "split": "int8",
}
_IMAGE_ARRAYS = {
    "image": "float32",
    "case": "int32",
    "dose": "float64",
    "site_start": "int64",
    "site_count": "int32",
}


def _compressor():
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")


class StoreWriter:
    """Appends finished work units to a store in unit order (see the module docstring)."""

    def __init__(self, path: Path, config: DatasetConfig, root) -> None:
        self.path = path
        self.config = config
        self._root = root
        self._pending: dict[int, dict[str, np.ndarray]] = {}  # finished, in memory, not yet appended
        self._staged: set[int] = _staged_on_disk(path / _STAGING)  # finished, on disk, not yet appended
        build = dict(root.attrs["build"])
        self.units_written = int(build["units_written"])
        self.n_patches = int(build["n_patches"])
        self._split_codes = np.array([SPLITS.index(c.split) for c in config.cases], dtype=np.int8)

    # -- opening --------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, config: DatasetConfig) -> StoreWriter:
        """A new, empty store at `path` (which must not exist)."""
        path = Path(path)
        if path.exists():
            raise InputError(f"{path}: exists (add --resume to continue it, or choose a new path)")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
        try:
            cls._layout(tmp, config)
            tmp.rename(path)  # a store exists only once its layout and attributes are complete
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(path, config, _open_root(path, mode="r+"))

    @staticmethod
    def _layout(path: Path, config: DatasetConfig) -> None:
        import yaml
        import zarr

        from stemsight.core.io import _umask

        path.chmod(0o777 & ~_umask())  # a store is shared data, not a private temporary folder
        root = zarr.open_group(str(path), mode="w")
        p, f, side = config.patch_size_px, len(CONTEXT_FEATURES), config.image_size_px
        shapes = {"patch": (p, p), "context": (f,)}
        for name, dtype in _PATCH_ARRAYS.items():
            tail = shapes.get(name, ())
            root.create_array(
                f"patches/{name}",
                shape=(0, *tail),
                chunks=(PATCH_CHUNK, *tail),
                dtype=dtype,
                fill_value=0,
                compressors=_compressor(),
            )
        for name, dtype in _IMAGE_ARRAYS.items():
            tail = (side, side) if name == "image" else ()
            root.create_array(
                f"images/{name}",
                shape=(0, *tail),
                chunks=(1, *tail) if tail else (4096,),
                dtype=dtype,
                fill_value=0,
                compressors=_compressor(),
            )
        root.attrs.update(
            {
                "format": STORE_FORMAT,
                "stemsight_version": __version__,
                "config": config.to_dict(),
                "config_digest": config.digest(),
                "labels": list(ALL_LABELS),
                "sublattices": list(SUBLATTICES),
                "splits": list(SPLITS),
                "context_schema": CONTEXT_SCHEMA,
                "context_features": list(CONTEXT_FEATURES),
                "patch_normalisation": PATCH_NORMALISATION,
                "cases": [
                    {"index": c.index, "name": c.name, "host": c.host, "dopant": c.dopant,
                     "dopant_site": c.dopant_site, "condition": c.condition.name, "split": c.split}
                    for c in config.cases
                ],
                "build": {"units_total": config.n_units, "units_written": 0, "n_patches": 0,
                          "complete": False},
            }
        )
        _atomic_text(path / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))

    @classmethod
    def resume(cls, path: str | Path, config: DatasetConfig) -> StoreWriter:
        """Reopen a store for the same config; cut its arrays back to the last recorded append."""
        path = Path(path)
        root = _open_root(path, mode="r+")
        if root.attrs.get("config_digest") != config.digest():
            stored = str(root.attrs.get("config_digest", "?"))[:12]
            raise InputError(
                f"{path}: was built from a different config (digest {stored} ≠ {config.digest()[:12]}); "
                "build into a new path"
            )
        check_patch_normalisation(root.attrs.get("patch_normalisation"), str(path))
        writer = cls(path, config, root)
        writer._truncate()
        for unit in sorted(writer._staged):
            if unit < writer.units_written:  # appended, but killed before its staging file went away
                writer._unstage(unit)
        return writer

    # -- state ----------------------------------------------------------------------------------------
    @property
    def _staging(self) -> Path:
        return self.path / _STAGING

    @property
    def complete(self) -> bool:
        return self.units_written == self.config.n_units

    def finished_units(self) -> set[int]:
        """Units that need no simulation: appended or staged."""
        return set(range(self.units_written)) | self._staged

    # -- writing --------------------------------------------------------------------------------------
    def stage(self, result: dict[str, np.ndarray]) -> None:
        """Keep a finished unit: on disk (survives a kill) and in memory until it is appended."""
        unit = int(result["unit"])
        self._staging.mkdir(exist_ok=True)
        final = self._staging / f"unit-{unit:08d}.npz"
        fd, tmp = tempfile.mkstemp(prefix=".unit-", suffix=".tmp", dir=self._staging)
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **result)
        os.replace(tmp, final)
        self._staged.add(unit)
        self._pending[unit] = result

    def append_ready(self, *, min_patches: int = PATCH_CHUNK, force: bool = False) -> int:
        """Append the run of finished units that follows the last written one, once it holds at least
        `min_patches` patches (or whatever is ready when `force`). Returns the number of units appended."""
        run = []
        unit, count = self.units_written, 0
        while unit in self._staged:
            result = self._pending.get(unit)
            if result is None:
                result = self._load_staged(unit)
                self._pending[unit] = result
            run.append(result)
            count += len(result["label"])
            unit += 1
        if not run or (count < min_patches and not force):
            return 0
        self._append(run)
        for result in run:
            self._unstage(int(result["unit"]))
        return len(run)

    def finish(self) -> None:
        """Append everything left; mark the store complete and remove the staging folder."""
        self.append_ready(force=True)
        if not self.complete:
            raise RuntimeError(f"{self.path}: units missing after the build ({self.units_written} written)")
        build = dict(self._root.attrs["build"], complete=True)
        self._root.attrs["build"] = build
        shutil.rmtree(self._staging, ignore_errors=True)

    def _append(self, run: list[dict[str, np.ndarray]]) -> None:
        root, n0, i0 = self._root, self.n_patches, self.units_written
        counts = np.array([len(r["label"]) for r in run], dtype=np.int64)
        n1, i1 = n0 + int(counts.sum()), i0 + len(run)
        cases = np.array([self._case_of(int(r["unit"])) for r in run], dtype=np.int32)
        patch_data = {
            "patch": np.concatenate([r["patches"] for r in run]),
            "context": np.concatenate([np.broadcast_to(r["context"], (c, r["context"].size))
                                       for r, c in zip(run, counts, strict=True)]),
            "label": np.concatenate([r["label"] for r in run]),
            "sublattice": np.concatenate([r["sublattice"] for r in run]),
            "x_px": np.concatenate([r["x_px"] for r in run]),
            "y_px": np.concatenate([r["y_px"] for r in run]),
            "image": np.repeat(np.arange(i0, i1, dtype=np.int32), counts),
            "case": np.repeat(cases, counts),
            "split": np.repeat(self._split_codes[cases], counts),
        }
        image_data = {
            "image": np.stack([r["image"] for r in run]),
            "case": cases,
            "dose": np.array([r["dose"] for r in run], dtype=np.float64),
            "site_start": n0 + np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
            "site_count": counts.astype(np.int32),
        }
        for group, data, start, stop in (("patches", patch_data, n0, n1), ("images", image_data, i0, i1)):
            for name, values in data.items():
                arr = root[f"{group}/{name}"]
                arr.resize((stop, *arr.shape[1:]))
                arr[start:stop] = values
        self.units_written, self.n_patches = i1, n1
        root.attrs["build"] = dict(root.attrs["build"], units_written=i1, n_patches=n1)

    def _truncate(self) -> None:
        for group, length in (("patches", self.n_patches), ("images", self.units_written)):
            for name in (_PATCH_ARRAYS if group == "patches" else _IMAGE_ARRAYS):
                arr = self._root[f"{group}/{name}"]
                if arr.shape[0] != length:
                    arr.resize((length, *arr.shape[1:]))

    def _unstage(self, unit: int) -> None:
        self._pending.pop(unit, None)
        self._staged.discard(unit)
        (self._staging / f"unit-{unit:08d}.npz").unlink(missing_ok=True)

    def _case_of(self, unit: int) -> int:
        return unit // self.config.images_per_case

    def _load_staged(self, unit: int) -> dict[str, np.ndarray]:
        path = self._staging / f"unit-{unit:08d}.npz"
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


def _staged_on_disk(folder: Path) -> set[int]:
    return {int(p.stem.split("-")[1]) for p in folder.glob("unit-*.npz")} if folder.is_dir() else set()


def open_store(path: str | Path):
    """Open a finished or partial store read-only (zarr Group); InputError when it is not a store."""
    return _open_root(Path(path), mode="r")


def _open_root(path: Path, *, mode: str):
    return open_group(path, mode=mode, store_format=STORE_FORMAT, kind="dataset store")


def open_group(path: Path, *, mode: str, store_format: str, kind: str):
    """The zarr group at ``path`` if its ``format`` attribute is ``store_format``; InputError naming the
    ``kind`` of store otherwise (no zarr.json, unreadable, another format)."""
    import zarr

    if not (path / "zarr.json").is_file():
        raise InputError(f"{path}: not a stemsight {kind} (no zarr.json)")
    try:
        root = zarr.open_group(str(path), mode=mode)
    except Exception as exc:  # zarr raises several types for a damaged store
        raise InputError(f"{path}: unreadable store ({type(exc).__name__}: {exc})") from None
    if root.attrs.get("format") != store_format:
        raise InputError(f"{path}: not a stemsight {kind} (format {root.attrs.get('format')!r})")
    return root


@contextlib.contextmanager
def reading(path: str | Path) -> Iterator[None]:
    """Turn the errors of a damaged store read inside the block (an array folder removed: KeyError; a
    truncated or corrupt chunk: the codec's RuntimeError or ValueError; a file gone: OSError) into one
    InputError naming the store."""
    try:
        yield
    except InputError:
        raise
    except (KeyError, RuntimeError, ValueError, OSError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"{path}: damaged store ({type(exc).__name__}: {detail})") from None


def _atomic_text(path: Path, text: str) -> None:
    from stemsight.core.io import atomic_write_bytes

    atomic_write_bytes(path, text.encode())
