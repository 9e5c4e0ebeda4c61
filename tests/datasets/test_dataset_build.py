"""Building stores for real: LocalCluster workers, a loopback `dask scheduler` with `dask worker`s, a build
process killed with SIGKILL and resumed. The arrays must be byte-identical in every case."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from stemsight.cli.main import main
from stemsight.datasets.build import build_dataset, task_batches
from stemsight.datasets.config import config_from_dict, load_config
from stemsight.datasets.info import store_info
from stemsight.datasets.store import StoreWriter, open_store
from stemsight.datasets.units import simulate_unit

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "examples/datasets/tiny.yaml"
STEMSIGHT = [sys.executable, "-m", "stemsight.cli.main"]


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*STEMSIGHT, *args], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _files(store: Path) -> dict[str, bytes]:
    """Every file of a store by relative path (staging excluded: it must be gone anyway)."""
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def assert_same_store(a: Path, b: Path) -> None:
    ra, rb = open_store(a), open_store(b)
    for group, names in (("patches", ["patch", "context", "label", "sublattice", "x_px", "y_px", "image",
                                      "case", "split"]),
                         ("images", ["image", "case", "dose", "site_start", "site_count"])):
        for name in names:
            x, y = ra[f"{group}/{name}"][:], rb[f"{group}/{name}"][:]
            assert x.dtype == y.dtype and x.shape == y.shape, name
            assert x.tobytes() == y.tobytes(), f"{group}/{name} differs"
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys()
    assert [k for k in fa if fa[k] != fb[k]] == []  # chunks, metadata and config.yaml byte for byte


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """tiny.yaml built by the CLI on a one-worker LocalCluster."""
    out = tmp_path_factory.mktemp("ref") / "tiny.zarr"
    _cli("dataset", "build", str(TINY), "--out", str(out), "--workers", "1", "--no-progress")
    return out


def test_two_workers_give_the_same_bytes_as_one(reference, tmp_path):
    out = tmp_path / "w2.zarr"
    proc = _cli("dataset", "build", str(TINY), "--out", str(out), "--workers", "2", "--no-progress")
    assert "wrote" in proc.stdout
    assert_same_store(reference, out)
    assert not (out / ".staging").exists()


def test_in_process_build_gives_the_same_bytes(reference, tmp_path):
    out = tmp_path / "w0.zarr"
    build_dataset(load_config(TINY), out, workers=0, progress=False)
    assert_same_store(reference, out)


def test_store_holds_every_site_of_every_image(reference):
    config = load_config(TINY)
    root = open_store(reference)
    start, count = root["images/site_start"][:], root["images/site_count"][:]
    n = int(count.sum())
    assert root["patches/label"].shape == (n,) and root["patches/patch"].shape == (n, 24, 24)
    np.testing.assert_array_equal(start, np.concatenate([[0], np.cumsum(count)[:-1]]))
    unit = 7
    direct = simulate_unit(config, unit)
    s, c = int(start[unit]), int(count[unit])
    assert c == len(direct["label"])
    np.testing.assert_array_equal(root["patches/patch"][s : s + c], direct["patches"])
    np.testing.assert_array_equal(root["patches/label"][s : s + c], direct["label"])
    np.testing.assert_array_equal(root["images/image"][unit], direct["image"])
    assert set(root["patches/image"][s : s + c]) == {unit}
    case = config.cases[unit // config.images_per_case]
    assert set(root["patches/case"][s : s + c]) == {case.index}
    assert set(root["patches/split"][s : s + c]) == {root.attrs["splits"].index(case.split)}
    np.testing.assert_array_equal(root["patches/context"][s], direct["context"])


def test_killed_build_resumes_to_the_same_bytes(reference, tmp_path):
    """A real build process (and its Dask workers) is killed with SIGKILL part-way, then resumed."""
    out = tmp_path / "killed.zarr"
    proc = subprocess.Popen(
        [*STEMSIGHT, "dataset", "build", str(TINY), "--out", str(out), "--workers", "1", "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            build = _build_state(out)
            if build and build["units_written"] >= 1:
                break
            assert proc.poll() is None, "the build ended before it could be killed"
            time.sleep(0.02)
        else:
            pytest.fail("no unit was appended within 240 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    build = _build_state(out)
    assert not build["complete"] and 1 <= build["units_written"] < build["units_total"]
    before = store_info(out)
    assert before["complete"] is False and before["n_images"] == build["units_written"]
    again = _cli(
        "dataset", "build", str(TINY), "--out", str(out), "--resume", "--workers", "2", "--no-progress"
    )
    simulated = int(again.stdout.split("images simulated")[0].split(";")[-1])
    assert simulated <= build["units_total"] - build["units_written"]  # finished units were not redone
    assert_same_store(reference, out)


def _build_state(store: Path) -> dict | None:
    try:
        return json.loads((store / "zarr.json").read_text())["attributes"]["build"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


def test_resume_cuts_arrays_back_to_the_manifest(tmp_path):
    """A kill between an array write and the manifest update leaves longer arrays: resume cuts them."""
    config = load_config(TINY)
    out = tmp_path / "cut.zarr"
    writer = StoreWriter.create(out, config)
    for unit in range(3):
        writer.stage(simulate_unit(config, unit))
    assert writer.append_ready(force=True) == 3
    writer.stage(simulate_unit(config, 5))  # out of order: staged, not appended
    n = writer.n_patches
    root = open_store(out)
    import zarr

    rw = zarr.open_group(str(out), mode="r+")
    rw["patches/label"].resize((n + 50,))
    rw["images/image"].resize((5, 128, 128))
    del root
    again = StoreWriter.resume(out, config)
    assert again.units_written == 3 and again.n_patches == n
    assert open_store(out)["patches/label"].shape == (n,)
    assert open_store(out)["images/image"].shape[0] == 3
    assert again.finished_units() == {0, 1, 2, 5}


def test_loopback_dask_scheduler_and_workers_give_the_same_bytes(reference, tmp_path):
    """`dask scheduler` and `dask worker` processes on 127.0.0.1, reached by --scheduler."""
    bin_dir = Path(sys.executable).parent
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [
        subprocess.Popen(
            [str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(scheduler_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        procs.append(
            subprocess.Popen(
                [str(bin_dir / "dask"), "worker", address, "--nworkers", "2", "--nthreads", "1",
                 "--no-dashboard", "--host", "127.0.0.1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
            )
        )
        _wait_for_workers(address, 2)
        out = tmp_path / "remote.zarr"
        _cli("dataset", "build", str(TINY), "--out", str(out), "--scheduler", address, "--no-progress")
        assert_same_store(reference, out)
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _wait_for_workers(address: str, n: int) -> None:
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(n, timeout=60)


def test_unreachable_scheduler_is_exit_2(tmp_path):
    proc = _cli("dataset", "build", str(TINY), "--out", str(tmp_path / "s.zarr"), "--scheduler",
                "tcp://127.0.0.1:9", "--no-progress", check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--scheduler" in proc.stderr
    assert not (tmp_path / "s.zarr").exists()


def test_existing_output_without_resume_is_exit_2(reference, capsys):
    before = _files(reference)
    assert main(["dataset", "build", str(TINY), "--out", str(reference), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--resume" in err and err.count("\n") == 1
    assert _files(reference) == before


def test_resume_with_another_config_is_exit_2(reference, tmp_path, capsys):
    other = yaml.safe_load(TINY.read_text())
    other["seed"] = 7
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(other))
    assert main(["dataset", "build", str(path), "--out", str(reference), "--resume", "--workers", "0"]) == 2
    assert "different config" in capsys.readouterr().err


def test_resume_of_a_complete_store_runs_nothing(reference, capsys):
    before = _files(reference)
    assert main(["dataset", "build", str(TINY), "--out", str(reference), "--resume", "--workers", "0",
                 "--no-progress"]) == 0
    assert "0 images simulated" in capsys.readouterr().out
    assert _files(reference) == before


def test_info_counts_match_the_arrays(reference, capsys):
    assert main(["dataset", "info", str(reference), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    root = open_store(reference)
    labels = root["patches/label"][:]
    assert info["complete"] and info["n_patches"] == labels.size == sum(info["per_split"].values())
    assert sum(c["patches"] for c in info["per_case"]) == labels.size
    assert all(c["images"] == 2 for c in info["per_case"])
    for name, count in info["per_label"].items():
        assert count == int((labels == root.attrs["labels"].index(name)).sum())
    test_cases = {c["case"] for c in info["per_case"] if c["split"] == "test"}
    assert "MoS2:Se@X/60kV_30mrad_80-200mrad_0.12A" in test_cases
    assert info["size_on_disk_bytes"] > 0
    assert main(["dataset", "info", str(reference)]) == 0
    text = capsys.readouterr().out
    assert "complete" in text and "MoS2:V@M/60kV_30mrad_80-200mrad_0.12A" in text


def test_info_of_a_folder_that_is_no_store_is_exit_2(tmp_path, capsys):
    assert main(["dataset", "info", str(tmp_path)]) == 2
    assert "not a stemsight dataset store" in capsys.readouterr().err


def test_task_batches_keep_cases_apart():
    data = yaml.safe_load(TINY.read_text())
    data["images_per_case"] = 5
    config = config_from_dict(data)
    units = [u for u in range(config.n_units) if u % 7]  # gaps, as after a resume
    batches = task_batches(config, units, n_threads=1, max_size=3)
    assert [u for b in batches for u in b] == units
    for b in batches:
        assert len(b) <= 3 and len({u // 5 for u in b}) == 1 and b == list(range(b[0], b[-1] + 1))


@pytest.fixture(autouse=True)
def _no_stray_partials(tmp_path):
    yield
    leftovers = [p for p in tmp_path.rglob("*.partial")]
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert leftovers == []


@pytest.mark.parametrize("fail_at", [0, 2])
def test_bad_input_found_while_simulating_leaves_no_empty_store(tmp_path, monkeypatch, fail_at):
    """An input error from the first image removes the store the build made; one after images were kept
    leaves the store, to be resumed."""
    import stemsight.datasets.build as build
    from stemsight.core.errors import InputError

    config = load_config(TINY)

    def simulate(config, unit):
        if unit == fail_at:
            raise InputError("a problem found in unit simulation")
        return simulate_unit(config, unit)

    monkeypatch.setattr(build, "simulate_unit", simulate)
    out = tmp_path / "store.zarr"
    with pytest.raises(InputError, match="unit simulation"):
        build_dataset(config, out, workers=0, progress=False)
    if fail_at == 0:
        assert not out.exists()
    else:
        assert StoreWriter.resume(out, config).finished_units() == {0, 1}
