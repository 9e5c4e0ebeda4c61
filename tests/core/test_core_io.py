"""core.io.atomic_dir / atomic_write_bytes: all or nothing."""

from __future__ import annotations

import os
import stat

import pytest

from stemsight.core.io import atomic_dir, atomic_write_bytes


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_an_error_inside_the_block_leaves_nothing(tmp_path):
    target = tmp_path / "bundle"
    with pytest.raises(RuntimeError, match="boom"), atomic_dir(target) as tmp:
        (tmp / "image.npy").write_bytes(b"half")
        assert tmp.parent == tmp_path
        assert tmp.name.endswith(".partial")
        raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_success_moves_the_files_into_place(tmp_path):
    target = tmp_path / "sub" / "bundle"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("a")
        (tmp / "b.bin").write_bytes(b"\x00\x01")
        assert not target.exists()  # nothing visible until the block ends
    assert sorted(p.name for p in target.iterdir()) == ["a.txt", "b.bin"]
    assert (target / "b.bin").read_bytes() == b"\x00\x01"
    assert _leftovers(target.parent) == []


def test_an_existing_target_is_replaced_as_a_whole(tmp_path):
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    (target / "keep.txt").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "keep.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "new"
    assert _leftovers(tmp_path) == []


def test_an_error_keeps_the_existing_target_untouched(tmp_path):
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(ValueError), atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
        raise ValueError
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    assert _leftovers(tmp_path) == []


def test_overwrite_false_refuses_an_existing_target(tmp_path):
    target = tmp_path / "bundle"
    target.mkdir()
    with pytest.raises(FileExistsError), atomic_dir(target, overwrite=False) as tmp:
        (tmp / "x").write_text("x")
    assert list(target.iterdir()) == []
    assert _leftovers(tmp_path) == []


def test_the_folder_gets_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "bundle") as tmp:
            (tmp / "x").write_text("x")
        atomic_write_bytes(tmp_path / "file.bin", b"data")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "bundle").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "file.bin").stat().st_mode) == 0o644


def test_atomic_write_bytes_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    atomic_write_bytes(path, b"new bytes")
    assert path.read_bytes() == b"new bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
