"""core.micrographs.read_micrograph: microscope files to float32 frames with their calibration, or a
one-line InputError naming the file."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

from stemsight.core.errors import InputError
from stemsight.core.micrographs import SUPPORTED_SUFFIXES, Micrograph, read_micrograph

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "real"


def _real(relative: str) -> Path:
    path = REAL / relative
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def _image(shape=(32, 40), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _write_hspy(
    path, data, *, title="HAADF", units=("nm", "nm"), scales=(0.02, 0.03), navigate=None, energy_kev=None
) -> Path:
    """An .hspy file through rosettasciio's writer; the last two axes get `units` and `scales`."""
    from rsciio.hspy import file_writer

    navigate = navigate or [False] * data.ndim
    scales, units = (1.0,) * (data.ndim - 2) + tuple(scales), ("nm",) * (data.ndim - 2) + tuple(units)
    axes = [
        {"name": f"axis{i}", "size": n, "offset": 0.0, "navigate": nav, "scale": scale, "units": unit}
        for i, (n, nav, scale, unit) in enumerate(zip(data.shape, navigate, scales, units, strict=True))
    ]
    metadata = {"General": {"title": title}, "Signal": {"signal_type": ""}}
    if energy_kev is not None:
        metadata["Acquisition_instrument"] = {"TEM": {"beam_energy": energy_kev}}
    signal = {"data": data, "axes": axes, "metadata": metadata, "original_metadata": {}}
    signal |= {"attributes": {"_lazy": False}, "tmp_parameters": {}, "learning_results": {}, "models": {}}
    signal["package_info"] = {"name": "stemsight-tests", "version": "0"}
    file_writer(str(path), signal, show_progressbar=False)
    return Path(path)


def _write_tif(path, data, *, px_nm=(0.02, 0.03), unit="nm") -> Path:
    """An ImageJ TIFF: X/YResolution in pixels per `unit`, the unit in the description."""
    resolution = (1 / px_nm[1], 1 / px_nm[0])  # (x, y)
    tifffile.imwrite(path, data, imagej=True, resolution=resolution, metadata={"unit": unit})
    return Path(path)


# Round trips through files written here.


def test_imagej_tif_gives_frames_and_pixel_size_in_angstrom(tmp_path):
    data = _image((32, 40))
    m = read_micrograph(_write_tif(tmp_path / "a.tif", data, px_nm=(0.02, 0.03)))
    assert isinstance(m, Micrograph)
    assert m.frames.shape == (1, 32, 40) and m.frames.dtype == np.float32
    np.testing.assert_array_equal(m.frames[0], data)
    assert m.pixel_size_a == pytest.approx((0.2, 0.3), rel=1e-6)  # (row, column) Å, not swapped
    assert (m.format, m.energy_kev, m.path) == ("tif", None, tmp_path / "a.tif")


def test_imagej_tif_in_micron_and_uncalibrated_tif(tmp_path):
    micron = read_micrograph(_write_tif(tmp_path / "um.tiff", _image(), px_nm=(2e-4, 3e-4), unit="micron"))
    assert micron.pixel_size_a == pytest.approx((2.0, 3.0), rel=1e-6)
    tifffile.imwrite(tmp_path / "plain.tif", (_image() * 1000).astype(np.uint16))
    plain = read_micrograph(tmp_path / "plain.tif")
    assert plain.pixel_size_a is None
    assert plain.frames.dtype == np.float32 and plain.frames.max() > 1


def test_tif_stack_keeps_frame_order(tmp_path):
    stack = np.stack([_image(seed=s) + s for s in range(3)])
    m = read_micrograph(_write_tif(tmp_path / "stack.tif", stack))
    assert m.frames.shape == (3, 32, 40)
    np.testing.assert_array_equal(m.frames, stack)
    assert m.pixel_size_a == pytest.approx((0.2, 0.3), rel=1e-6)


def test_hspy_gives_calibration_energy_and_title(tmp_path):
    data = _image((32, 40))
    m = read_micrograph(_write_hspy(tmp_path / "s.hspy", data, energy_kev=80.0, title="HAADF"))
    np.testing.assert_array_equal(m.frames[0], data)
    assert m.pixel_size_a == pytest.approx((0.2, 0.3))
    assert (m.energy_kev, m.format, m.signal_title) == (80.0, "hspy", "HAADF")


UNITS = {"nm": 10.0, "Å": 1.0, "A": 1.0, "angstrom": 1.0, "pm": 0.01, "µm": 1e4, "um": 1e4, "m": 1e10}
UNITS |= {"px": None, "<undefined>": None, "1/nm": None}


@pytest.mark.parametrize(("unit", "angstrom_per_unit"), UNITS.items())
def test_axis_units_convert_to_angstrom_or_none(tmp_path, unit, angstrom_per_unit):
    m = read_micrograph(_write_hspy(tmp_path / "u.hspy", _image(), units=(unit, unit), scales=(0.5, 0.25)))
    if angstrom_per_unit is None:
        assert m.pixel_size_a is None
    else:
        assert m.pixel_size_a == pytest.approx((0.5 * angstrom_per_unit, 0.25 * angstrom_per_unit))
    assert m.energy_kev is None


def _merge_hspy(target: Path, *others: Path) -> None:
    import h5py

    with h5py.File(target, "a") as out:
        for other in others:
            with h5py.File(other) as f:
                for name in f["Experiments"]:
                    f.copy(f[f"Experiments/{name}"], out["Experiments"])


def test_several_signals_prefer_haadf_then_adf_then_df(tmp_path):
    bf = _write_hspy(tmp_path / "bf.hspy", _image(seed=1), title="BF")
    df = _write_hspy(tmp_path / "df.hspy", _image(seed=2), title="DF4")
    haadf = _write_hspy(tmp_path / "haadf.hspy", _image(seed=3), title="HAADF")
    eds = _write_hspy(tmp_path / "eds.hspy", _image((8, 8, 50)), title="EDS", navigate=[True, True, False])
    _merge_hspy(bf, df, eds)
    m = read_micrograph(bf)
    assert m.signal_title == "DF4"
    np.testing.assert_array_equal(m.frames[0], _image(seed=2))
    _merge_hspy(bf, haadf)
    assert read_micrograph(bf).signal_title == "HAADF"
    eels = _write_hspy(tmp_path / "eels.hspy", _image((4, 60)), title="EELS", navigate=[True, False])
    _merge_hspy(eds, eels)
    with pytest.raises(InputError, match=r"eds\.hspy: no 2D image signal .*EDS"):
        read_micrograph(eds)


def test_npy_without_sidecar_has_no_calibration(tmp_path):
    data = (_image((32, 40)) * 4000).astype(np.uint16)
    np.save(tmp_path / "img.npy", data)
    m = read_micrograph(tmp_path / "img.npy")
    assert m.pixel_size_a is None and m.energy_kev is None and m.format == "npy"
    np.testing.assert_array_equal(m.frames[0], data.astype(np.float32))


def test_npy_sidecar_field_of_view_gives_pixel_size(tmp_path):
    np.save(tmp_path / "img.npy", _image((32, 40)))
    spatial = {"field_of_view_x": 4.0, "field_of_view_y": 6.4, "field_of_view_units": "nm"}
    sidecar = {"material": "x", "experimental_details": {"voltage": "60 kV", "spatial_info": spatial}}
    (tmp_path / "img.json").write_text(json.dumps(sidecar))
    m = read_micrograph(tmp_path / "img.npy")
    assert m.pixel_size_a == pytest.approx((6.4 / 32 * 10, 4.0 / 40 * 10))  # rows from y, columns from x
    (tmp_path / "img.json").write_text(json.dumps({"notes": "unrelated", "field_of_view_x": 4.0}))
    assert read_micrograph(tmp_path / "img.npy").pixel_size_a is None  # no units, no y: no guess


def test_npy_stack(tmp_path):
    stack = np.stack([_image(seed=s) for s in range(3)]).astype(np.float64)
    np.save(tmp_path / "stack.npy", stack)
    m = read_micrograph(tmp_path / "stack.npy")
    assert m.frames.shape == (3, 32, 40) and m.frames.dtype == np.float32
    np.testing.assert_allclose(m.frames, stack, rtol=1e-7)


def test_mrc_stack_with_cell_in_angstrom(tmp_path):
    """An MRC2014 file written by hand: float32 (nz, ny, nx) with a cell of 20 × 8 × 3 Å."""
    stack = np.stack([_image(seed=s) for s in range(3)])
    header = np.zeros(256, dtype="<i4")
    header[[0, 1, 2, 3, 7, 8, 9, 16, 17, 18]] = [40, 32, 3, 2, 40, 32, 3, 1, 2, 3]  # sizes, mode, axes
    header.view("<f4")[10:16] = [20.0, 8.0, 3.0, 90.0, 90.0, 90.0]  # cell lengths (Å) and angles
    header[52:54] = np.frombuffer(b"MAP DD\x00\x00", dtype="<i4")
    (tmp_path / "tomo.mrc").write_bytes(header.tobytes() + stack.tobytes())
    m = read_micrograph(tmp_path / "tomo.mrc")
    assert type(m.frames) is np.ndarray and m.format == "mrc"
    np.testing.assert_array_equal(m.frames, stack)
    assert m.pixel_size_a == pytest.approx((8.0 / 32, 20.0 / 40))


def test_import_does_not_load_rosettasciio():
    code = "import sys, stemsight.core.micrographs; sys.exit(bool({'rsciio', 'h5py'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# The real files in ../shared/real.


@pytest.mark.real
def test_real_berkeley_emd():
    m = read_micrograph(_real("srtio3/Acquisition_18.emd"))
    assert m.frames.shape == (1, 1024, 1024)
    assert m.format == "emd (Berkeley)"
    assert m.pixel_size_a == pytest.approx((0.1225, 0.1225), rel=2e-3)  # 12.25 pm
    assert m.energy_kev == pytest.approx(200.0)  # 'microscope/high tension' = 200000 V


WSSE = "ws2_selenized/partially_converted_WSSe"


@pytest.mark.real
@pytest.mark.parametrize("number", [3, 4, 12, 14])
def test_real_ws2_tif_pixel_size_from_resolution_tags(number):
    m = read_micrograph(_real(f"{WSSE}/SuperScan_HAADF_{number}_corrected.tif"))
    assert m.frames.ndim == 3 and m.frames.shape[1] in (512, 1024)
    assert m.pixel_size_a is not None
    assert 0.07 <= m.pixel_size_a[0] == m.pixel_size_a[1] <= 0.18  # 7–18 pm
    with tifffile.TiffFile(m.path) as tif:  # XResolution is pixels per nm
        num, den = tif.pages[0].tags["XResolution"].value
    assert m.pixel_size_a[1] == pytest.approx(10 * den / num)


@pytest.mark.real
def test_real_ws2_tif_without_resolution_tags_is_uncalibrated():
    m = read_micrograph(_real("ws2_selenized/fully_converted_WSe2/SuperScan_HAADF_14_corrected.tif"))
    assert m.frames.shape == (1, 1024, 1024)
    assert m.pixel_size_a is None


@pytest.mark.real
@pytest.mark.parametrize("name", ["Exp-000-2", "Exp-001-5", "Exp-002-5", "commit770da85"])
def test_real_mos2_npy_with_json_field_of_view(name):
    m = read_micrograph(_real(f"mos2_v_doped/MoS2_stem_{name}.npy"))
    spatial = json.loads(m.path.with_suffix(".json").read_text())["experimental_details"]["spatial_info"]
    assert spatial["field_of_view_units"] == "nm"
    ny, nx = m.frames.shape[1:]
    expected = (10 * spatial["field_of_view_y"] / ny, 10 * spatial["field_of_view_x"] / nx)
    assert m.pixel_size_a == pytest.approx(expected)
    assert 0.1 < m.pixel_size_a[0] < 0.2


@pytest.mark.real
def test_real_dm3_diffraction_pattern_has_no_spatial_calibration():
    m = read_micrograph(_real("diffraction/rsciio_test_diffraction_pattern.dm3"))
    assert m.frames.shape == (1, 87, 87)
    assert m.format == "dm3"
    assert m.pixel_size_a is None  # calibrated in 1/nm
    assert m.energy_kev == pytest.approx(200.0)  # Microscope Info/Voltage, through rosettasciio's mapping


# Bad input: each case writes a file and names a fragment of the expected message.


DM3 = "diffraction/rsciio_test_diffraction_pattern.dm3"


def _truncated(make, n=200):
    def write(path: Path) -> Path:
        whole = make(path.with_name("whole" + path.suffix))
        path.write_bytes(whole.read_bytes()[:n])
        return path

    return write


def _truncated_real(relative, n=200):
    return _truncated(lambda _: _real(relative), n)


def _npy(array):
    def write(path: Path) -> Path:
        np.save(path, array, allow_pickle=True)
        return path

    return write


def _tif_rgb(path: Path) -> Path:
    tifffile.imwrite(path, (_image((32, 32, 3)) * 255).astype(np.uint8), photometric="rgb")
    return path


def _partly_nan():
    image = _image()
    image[[1, 5, 9], [2, 3, 4]] = np.nan
    return image


def _spectrum_image(path: Path) -> Path:
    return _write_hspy(path, _image((8, 8, 50)), navigate=[True, True, False])


def _bad_sidecar(path: Path) -> Path:
    path.with_suffix(".json").write_text("{fov")
    return _npy(_image())(path)


def _npz_as_npy(path: Path) -> Path:
    np.savez(path.with_suffix(".npz"), a=_image())
    path.with_suffix(".npz").rename(path)
    return path


BAD = {
    "truncated hspy": (".hspy", _truncated(lambda p: _write_hspy(p, _image())), "cannot read as hspy"),
    "truncated tif": (".tif", _truncated(lambda p: _write_tif(p, _image())), "cannot read as tif"),
    "truncated npy": (".npy", _truncated(_npy(_image()), 100), "cannot read as npy"),
    "truncated dm3": (".dm3", _truncated_real(DM3), "cannot read as dm3"),
    "half a dm3": (".dm3", _truncated_real(DM3, 96_000), "cannot read as dm3"),
    "truncated emd": (".emd", _truncated_real("srtio3/Acquisition_18.emd"), "cannot read as emd"),
    "rgb npy": (".npy", _npy((_image((32, 32, 3)) * 255).astype(np.uint8)), "RGB"),
    "rgba npy": (".npy", _npy(_image((32, 32, 4))), "RGB"),
    "rgb tif": (".tif", _tif_rgb, "RGB"),
    "1-D": (".npy", _npy(_image((100,))), "1-D data"),
    "4-D": (".npy", _npy(_image((2, 3, 32, 32))), "4D-STEM scan"),
    "complex": (".npy", _npy(_image().astype(np.complex64)), "complex data"),
    "strings": (".npy", _npy(np.full((32, 32), "a")), "not numeric"),
    "pickled objects": (".npy", _npy(np.empty((32, 32), dtype=object)), "cannot read as npy"),
    "npz archive": (".npy", _npz_as_npy, "cannot read as npy"),
    "empty": (".npy", _npy(np.zeros((0, 32), np.float32)), "empty array"),
    "all NaN": (".npy", _npy(np.full((32, 32), np.nan)), "all values are NaN/inf"),
    "partly NaN": (".npy", _npy(_partly_nan()), "3 of 1280 pixel values are not finite"),
    "inf": (".npy", _npy(np.where(_image() > 0.5, np.inf, 1.0)), "not finite"),
    "beyond float32": (".npy", _npy(np.where(_image() > 0.5, 1e300, 1.0)), "too large for float32"),
    "constant": (".npy", _npy(np.full((32, 32), 7.0)), "the image constant (value 7): no contrast"),
    "constant frame": (".npy", _npy(np.stack([_image(), np.zeros((32, 40))])), "frame(s) [1] constant"),
    "too small": (".npy", _npy(_image((8, 40))), "8×40 px; need at least 16"),
    "spectrum image": (".hspy", _spectrum_image, "no 2D image signal"),
    "sidecar not json": (".npy", _bad_sidecar, "sidecar bad.json is not valid JSON"),
    "unknown suffix": (".png", lambda p: p.write_bytes(b"\x89PNG\r\n") and p, "supported: .dm3, .dm4"),
    "no suffix": ("", lambda p: p.write_bytes(b"data") and p, "unsupported file type '(none)'"),
    "missing file": (".tif", lambda p: p, "no such file"),
    "folder": (".dm4", lambda p: p.mkdir() or p, "not a file"),
}


USES_REAL = {"truncated dm3", "half a dm3", "truncated emd"}
CASES = [pytest.param(case, marks=pytest.mark.real) if case in USES_REAL else case for case in BAD]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_a_one_line_input_error_naming_the_file(tmp_path, case):
    suffix, make, fragment = BAD[case]
    path = make(tmp_path / f"bad{suffix}")
    with pytest.raises(InputError) as info:
        read_micrograph(path)
    message = str(info.value)
    assert path.name in message and "\n" not in message
    assert fragment in message


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_random_bytes_cannot_be_read(tmp_path, suffix):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match=rf"noise\{suffix}: cannot read as {suffix[1:]}"):
        read_micrograph(path)


MAGIC = [b"", b"II*\x00", b"MM\x00*", b"\x93NUMPY\x01\x00", b"\x89HDF\r\n\x1a\n", b"\x00\x00\x00\x04"]
MAGIC += [b"\x00\x00\x00\x03", b"II\x97\x01"]  # tif, numpy, hdf5 (emd), dm4, dm3, ser


@settings(max_examples=25, deadline=None)
@given(
    head=st.sampled_from(MAGIC),
    body=st.binary(max_size=1024),
    suffix=st.sampled_from([".tif", ".npy", ".dm4", ".emd", ".mrc", ".ser"]),
)
def test_arbitrary_bytes_never_raise_anything_but_input_error(head, body, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(head + body)
        try:
            m = read_micrograph(path)
        except InputError as exc:
            assert "fuzz" in str(exc) and "\n" not in str(exc)
        else:
            assert m.frames.ndim == 3 and m.frames.dtype == np.float32
