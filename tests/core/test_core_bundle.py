"""The labelled bundle: bundle_files + read_bundle round trip, clear errors naming the broken file."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from stemsight.core.bundle import SITE_COLUMNS, LabelledImage, bundle_files, read_bundle
from stemsight.core.context import ImagingContext
from stemsight.core.errors import InputError

CTX = ImagingContext(
    host="MoS2",
    dopant="V",
    energy_kev=80.0,
    convergence_mrad=30.0,
    detector_inner_mrad=80.0,
    detector_outer_mrad=200.0,
    pixel_size_a=0.2,
    dose_e_per_a2=1e4,
)


def _item(seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random((12, 17)).astype(np.float32)
    image[0, 0] = np.float32(1 / 3)  # a value that a text round trip would not keep exactly
    return LabelledImage(
        image=image,
        x_px=np.array([0.0, 3.25, 16.0]),
        y_px=np.array([0.0, 5.5, 11.0]),
        sublattice=np.array(["M", "X", "M"]),
        label=np.array(["M", "V_X", "D_M"]),
        context=CTX,
        provenance={"stemsight_version": "test", "simulation": {"seed": seed}},
    )


def _write(folder, files):
    folder.mkdir(exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def test_bundle_files_are_the_contract_files():
    files = bundle_files(_item())
    assert set(files) == {"image.npy", "image.tif", "meta.json", "sites.csv"}
    assert files["sites.csv"].decode().splitlines()[0] == ",".join(SITE_COLUMNS)
    meta = json.loads(files["meta.json"])
    assert meta["host"] == "MoS2" and meta["dopant_site"] == "M"
    assert meta["simulation"] == {"seed": 0}
    assert np.load(io.BytesIO(files["image.npy"])).dtype == np.float32


def test_bundle_files_are_deterministic():
    assert bundle_files(_item()) == bundle_files(_item())
    assert bundle_files(_item(0))["image.npy"] != bundle_files(_item(1))["image.npy"]


def test_tif_holds_the_same_array():
    import tifffile

    item = _item()
    arr = tifffile.imread(io.BytesIO(bundle_files(item)["image.tif"]))
    np.testing.assert_array_equal(arr, item.image)


def test_round_trip_keeps_image_sites_and_context(tmp_path):
    item = _item()
    folder = _write(tmp_path / "b", bundle_files(item))
    back = read_bundle(folder)
    assert back.image.dtype == np.float32
    assert back.image.tobytes() == item.image.tobytes()
    np.testing.assert_array_equal(back.x_px, item.x_px)
    np.testing.assert_array_equal(back.y_px, item.y_px)
    assert back.sublattice.tolist() == ["M", "X", "M"]
    assert back.label.tolist() == ["M", "V_X", "D_M"]
    assert back.context == CTX
    assert back.provenance == item.provenance
    assert back.counts() == {"D_M": 1, "M": 1, "V_X": 1}
    # writing what was read gives the same bytes again
    assert bundle_files(back) == bundle_files(item)


def test_an_empty_site_table_round_trips(tmp_path):
    item = _item()
    empty = LabelledImage(item.image, np.zeros(0), np.zeros(0), np.zeros(0, str), np.zeros(0, str), CTX, {})
    back = read_bundle(_write(tmp_path / "b", bundle_files(empty)))
    assert len(back.x_px) == 0 and len(back.label) == 0


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(InputError, match="nowhere"):
        read_bundle(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["image.npy", "meta.json", "sites.csv"])
def test_missing_file_is_named(tmp_path, name):
    files = bundle_files(_item())
    del files[name]
    with pytest.raises(InputError, match=name.replace(".", r"\.")):
        read_bundle(_write(tmp_path / "b", files))


def _npy(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _npz():
    buf = io.BytesIO()
    np.savez(buf, image=np.zeros((4, 4)))
    return buf.getvalue()


@pytest.mark.parametrize(
    "content",
    [
        b"this is not an npy file",
        b"",
        _npy(np.zeros((8, 8), np.float32))[:-40],  # truncated
        _npy(np.zeros((2, 3, 4), np.float32)),  # 3D
        _npy(np.array(["a", "b"])),  # not numeric
        _npy(np.zeros((4, 4), np.complex64)),
        _npz(),
    ],
    ids=["garbage", "empty", "truncated", "3d", "strings", "complex", "npz"],
)
def test_corrupt_image_is_named(tmp_path, content):
    files = {**bundle_files(_item()), "image.npy": content}
    with pytest.raises(InputError, match=r"image\.npy"):
        read_bundle(_write(tmp_path / "b", files))


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe\x00garbage", b"[1, 2, 3]", b'{"host": "MoS2"}', b'{"host": "Unobtainium"}'],
    ids=["syntax", "binary", "list", "incomplete", "bad-host"],
)
def test_bad_meta_json_is_named(tmp_path, content):
    files = {**bundle_files(_item()), "meta.json": content}
    with pytest.raises(InputError, match=r"meta\.json"):
        read_bundle(_write(tmp_path / "b", files))


@pytest.mark.parametrize(
    "content",
    [
        b"a,b,c\n1,2,3\n",  # wrong columns
        b"x_px,y_px,label\n",  # a column missing, no rows
        b"",  # empty file
        b"x_px,y_px,sublattice,label\n1.0,abc,M,M\n",  # bad number
        b"x_px,y_px,sublattice,label\n1.0,2.0,M\n",  # short row
        b"x_px,y_px,sublattice,label\n1.0,2.0,M,M,extra\n",  # long row
        b"x_px,y_px,sublattice,label\nnan,2.0,M,M\n",  # not finite
        b"\xff\xfe\x00\x01binary",
    ],
    ids=["columns", "missing-column", "empty", "number", "short-row", "long-row", "nan", "binary"],
)
def test_bad_sites_csv_is_named(tmp_path, content):
    files = {**bundle_files(_item()), "sites.csv": content}
    with pytest.raises(InputError, match=r"sites\.csv"):
        read_bundle(_write(tmp_path / "b", files))
