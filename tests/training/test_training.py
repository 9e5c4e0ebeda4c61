"""The training loop, checkpoints and evaluation, for real on a tiny store (CPU, one thread)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stemsight.cli.main import main
from stemsight.core.errors import InputError
from stemsight.datasets.build import build_dataset
from stemsight.datasets.config import load_config
from stemsight.models import create_model
from stemsight.training.checkpoint import load_checkpoint, save_checkpoint
from stemsight.training.loop import TrainConfig, dihedral, train

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "examples/datasets/tiny.yaml"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store") / "tiny.zarr"
    build_dataset(load_config(TINY), out, workers=0, progress=False)
    return out


def _config(store: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(store), model="context-cnn", out=str(out), epochs=1, batch_size=64, max_patches=256,
                threads=1, seed=0)
    return TrainConfig(**{**base, **kw})


def _weights(path: Path) -> bytes:
    return path.with_suffix(".safetensors").read_bytes()


def test_checkpoint_round_trips(tmp_path):
    torch.manual_seed(0)
    model = create_model("context-cnn")
    json_path = save_checkpoint(tmp_path / "m", model, labels=["a"] * 11, context_schema="s",
                                context_features=["f"] * 26, data_digest="d",
                                patch={"size_px": 24, "size_a": 4.8})
    ckpt = load_checkpoint(json_path)
    assert ckpt.meta["model_name"] == "context-cnn" and ckpt.meta["patch"]["size_a"] == 4.8
    for (k, v), (k2, v2) in zip(model.state_dict().items(), ckpt.model.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    x = model.example_inputs(4, generator=torch.Generator().manual_seed(1))
    model.eval()
    assert torch.equal(model(**x), ckpt.model(**x))
    assert load_checkpoint(tmp_path / "m.safetensors").meta == ckpt.meta


@pytest.fixture
def saved(tmp_path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "m", create_model("image-only"), labels=["a"] * 11,
                           context_schema="s", context_features=["f"] * 26)


def test_corrupt_weights_are_refused(saved):
    weights = saved.with_suffix(".safetensors")
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(InputError, match="do not match"):
        load_checkpoint(saved)


def test_truncated_weights_with_a_matching_hash_are_refused(saved):
    weights = saved.with_suffix(".safetensors")
    blob = weights.read_bytes()[:100]
    weights.write_bytes(blob)
    meta = json.loads(saved.read_text())
    meta["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    saved.write_text(json.dumps(meta))
    with pytest.raises(InputError, match="unreadable safetensors"):
        load_checkpoint(saved)


def test_foreign_checkpoints_are_refused(saved, tmp_path):
    (tmp_path / "pickle.json").write_text(json.dumps({"format": "torch.save"}))
    with pytest.raises(InputError, match="not a stemsight checkpoint"):
        load_checkpoint(tmp_path / "pickle.json")
    (tmp_path / "junk.json").write_text("\x80not json")
    with pytest.raises(InputError, match="not a stemsight checkpoint"):
        load_checkpoint(tmp_path / "junk")
    meta = json.loads(saved.read_text())
    meta["model_name"] = "context-cnn"  # image-only weights under another model's name
    saved.write_text(json.dumps(meta))
    with pytest.raises(InputError, match="do not fit"):
        load_checkpoint(saved)
    with pytest.raises(InputError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent")


def test_same_seed_same_weights_other_seed_other_weights(store, tmp_path):
    a = train(_config(store, tmp_path / "a"), progress=False)
    b = train(_config(store, tmp_path / "b"), progress=False)
    c = train(_config(store, tmp_path / "c", seed=1), progress=False)
    assert a.history[0]["patches"] == 256
    assert _weights(a.out / "last") == _weights(b.out / "last")
    assert _weights(a.out / "last") != _weights(c.out / "last")
    before = create_model("context-cnn")
    trained = load_checkpoint(a.out / "last").model
    assert any(not torch.equal(p, q) for p, q in zip(before.state_dict().values(),
                                                     trained.state_dict().values(), strict=True))


def test_resume_continues_to_the_same_weights(store, tmp_path):
    whole = train(_config(store, tmp_path / "whole", epochs=3, patience=5), progress=False)
    first = train(_config(store, tmp_path / "split", epochs=3, patience=5), progress=False, epoch_limit=1)
    assert first.epochs_run == 1
    with pytest.raises(InputError, match="--resume"):
        train(_config(store, tmp_path / "split", epochs=3, patience=5), progress=False)
    resumed = train(_config(store, tmp_path / "split", epochs=3, patience=5), resume=True, progress=False)
    assert resumed.epochs_run == whole.epochs_run == 3
    assert _weights(whole.out / "last") == _weights(resumed.out / "last")
    assert [h["train_loss"] for h in whole.history] == [h["train_loss"] for h in resumed.history]
    assert len((tmp_path / "split" / "history.jsonl").read_text().splitlines()) == 3
    saved = (tmp_path / "split" / "train_config.yaml").read_text()
    assert "context-cnn" in saved and "data_digest" in saved


def test_the_intensity_loss_changes_a_learned_physics_head_and_only_that(store, tmp_path, capsys):
    learned = {"intensity_filter_px": 0}  # Î learned from the features, not read off the patch
    plain = train(_config(store, tmp_path / "plain", model_overrides=learned), progress=False)
    tied = train(_config(store, tmp_path / "tied", intensity_loss=1.0, model_overrides=learned),
                 progress=False)
    assert _weights(plain.out / "last") != _weights(tied.out / "last")
    assert tied.history[0]["train_loss"] != plain.history[0]["train_loss"]
    twin = train(_config(store, tmp_path / "twin", model="image-only"), progress=False)
    twin_tied = train(_config(store, tmp_path / "twin-tied", model="image-only", intensity_loss=1.0),
                      progress=False)
    assert _weights(twin.out / "last") == _weights(twin_tied.out / "last")  # nothing to tie: ignored
    with pytest.raises(InputError, match="intensity_loss"):
        _config(store, tmp_path / "bad", intensity_loss=-1.0)
    with pytest.raises(InputError, match=r"intensity_loss: .*reads its intensity off the patch"):
        train(_config(store, tmp_path / "measured", intensity_loss=1.0), progress=False)


def test_training_learns_the_sublattice_classes(store, tmp_path):
    """A few hundred steps on the tiny store: far better than the majority class on validation."""
    result = train(_config(store, tmp_path / "learn", epochs=6, max_patches=None, batch_size=32,
                           patience=6), progress=False)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert max(h["val_accuracy"] for h in result.history) > 0.95


def test_dihedral_maps_are_the_eight_symmetries_of_the_square():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(8, 1, 1, 1)
    out = dihedral(x, torch.arange(8))
    images = {tuple(o.flatten().tolist()) for o in out}
    assert len(images) == 8  # all different
    assert torch.equal(out[0], x[0])
    assert torch.equal(out[1], torch.rot90(x[0], 1, dims=(-2, -1)))
    for o in out:  # a permutation of the pixels
        assert sorted(o.flatten().tolist()) == list(range(16))


def test_cli_train_errors_are_one_line_exit_2(store, tmp_path, capsys):
    assert main(["train", "--data", str(store), "--model", "resnet-9000", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "context-cnn" in err
    assert main(["train", "--data", str(tmp_path), "--model", "context-cnn", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    assert "not a stemsight dataset store" in capsys.readouterr().err
    assert main(["train", "--data", str(store), "--model", "context-cnn", "--out", str(tmp_path / "r"),
                 "--epochs", "0"]) == 2


def test_ddp_under_torchrun_with_two_processes(store, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "stemsight.cli.main", "train",
         "--data", str(store), "--model", "context-cnn", "--out", str(out), "--epochs", "2",
         "--batch-size", "32", "--max-patches", "256", "--threads", "1", "--no-progress"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2  # one writer: rank 0
    assert history[0]["patches"] == 2 * (128 // 32) * 32  # each rank did its share of 256
    ckpt = load_checkpoint(out / "last")
    assert ckpt.meta["model_name"] == "context-cnn"
    assert all(torch.isfinite(v).all() for v in ckpt.model.state_dict().values())


def test_evaluate_writes_metrics_for_both_twins(store, tmp_path, capsys):
    from stemsight.datasets.simulate import SimulationRequest, simulate_labelled_image
    from stemsight.report.bundle import write_bundle

    ctx_run = train(_config(store, tmp_path / "ctx", epochs=2), progress=False).out
    img_run = train(_config(store, tmp_path / "img", model="image-only", epochs=2), progress=False).out
    case = load_config(TINY).cases[1]
    bundles = []
    for seed in (11, 12):
        item = simulate_labelled_image(SimulationRequest(context=case.context(1e5), size_a=15.0, seed=seed))
        bundles.append(str(write_bundle(item, tmp_path / f"b{seed}")))
    out = tmp_path / "eval"
    args = ["evaluate", *bundles, "--model", str(ctx_run), "--twin", str(img_run), "--out", str(out)]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("context", "image_only"):
        m = metrics[name]
        assert {"accuracy", "macro_recall", "per_class", "confusion", "mean_entropy", "ece"} <= set(m)
        assert 0 <= m["accuracy"] <= 1 and m["mean_entropy"] >= 0
        assert np.asarray(m["confusion"]["matrix"]).sum() == metrics["n_sites"]
    expected = 1 - metrics["context"]["mean_entropy"] / metrics["image_only"]["mean_entropy"]
    assert metrics["entropy_reduction"] == pytest.approx(expected)
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "entropy reduction" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(ctx_run), "--out", str(tmp_path / "e2")]) == 2
    shutil.rmtree(img_run)
    assert main(["evaluate", *bundles, "--model", str(ctx_run), "--twin", str(img_run),
                 "--out", str(tmp_path / "e3")]) == 2
    assert not (tmp_path / "e3").exists()


def test_checkpoints_and_stores_of_another_scale_or_context_schema_are_refused(store, tmp_path, capsys):
    run = train(_config(store, tmp_path / "ctx"), progress=False).out
    ckpt = load_checkpoint(run / "best")
    assert ckpt.meta["patch"]["normalisation"] == "sites-median-v3"
    meta_path = (run / "best").with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["patch"]["normalisation"] = "percentile-1-99"  # what the first release cut patches on
    meta_path.write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["evaluate", "--data", str(store), "--split", "train", "--model", str(run),
                 "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip()
    assert "intensity scale 'percentile-1-99'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "e").exists()

    meta["patch"]["normalisation"] = "sites-median-v3"
    meta["context_schema"] = "stemsight.context.v1"  # expected intensities from cross sections
    meta_path.write_text(json.dumps(meta))
    assert main(["evaluate", "--data", str(store), "--split", "train", "--model", str(run),
                 "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip()
    assert "context schema 'stemsight.context.v1'" in err and len(err.splitlines()) == 1

    old = tmp_path / "old.zarr"
    shutil.copytree(store, old)
    zarr_json = json.loads((old / "zarr.json").read_text())
    del zarr_json["attributes"]["patch_normalisation"]
    (old / "zarr.json").write_text(json.dumps(zarr_json))
    with pytest.raises(InputError, match="intensity scale None"):
        train(_config(old, tmp_path / "r2"), progress=False)


def test_unknown_dose_hides_the_dose_of_a_fraction_of_the_rows(store, tmp_path):
    from stemsight.datasets.context_features import CONTEXT_FEATURES
    from stemsight.training.loop import DOSE_FEATURES, forget_dose

    context = torch.rand(4000, len(CONTEXT_FEATURES)) + 0.5
    out = forget_dose(context, CONTEXT_FEATURES, 0.25, torch.Generator().manual_seed(0))
    dose = [CONTEXT_FEATURES.index(name) for name in DOSE_FEATURES]
    hidden = (out[:, dose] == 0).all(1)
    assert 0.22 < hidden.float().mean() < 0.28
    rest = [k for k in range(len(CONTEXT_FEATURES)) if k not in dose]
    assert torch.equal(out[:, rest], context[:, rest]) and torch.equal(out[~hidden], context[~hidden])
    # the checkpoint records that the model has seen the dose unknown (the analysis's context check)
    run = train(_config(store, tmp_path / "r", unknown_dose=0.25), progress=False).out
    low = load_checkpoint(run / "best").meta["context_range"]["min"]
    assert all(low[CONTEXT_FEATURES.index(name)] == 0.0 for name in DOSE_FEATURES)
    plain = train(_config(store, tmp_path / "p"), progress=False).out
    meta = load_checkpoint(plain / "best").meta
    assert meta["context_range"]["min"][CONTEXT_FEATURES.index("has_dose")] == 1
    # the training prior per sublattice: frequencies that sum to one, dopant classes only with a dopant
    prior = meta["label_prior"]
    labels = meta["labels"]
    assert prior and all(sum(v) == pytest.approx(1.0) for v in prior.values())
    assert all(prior[key][labels.index("D_M")] == 0 for key in prior if key == "M|none")
    assert any(prior[key][labels.index("D_M")] > 0 for key in prior if key == "M|dopant")
    with pytest.raises(InputError, match="unknown_dose"):
        _config(store, tmp_path / "x", unknown_dose=1.5)


def test_the_physics_filter_follows_the_store_patch_grid():
    from types import SimpleNamespace

    from stemsight.training.loop import _intensity_filter

    fine = SimpleNamespace(patch_size_px=32, patch_size_a=4.8)  # 0.15 Å steps: 0.3 Å is 2 pixels
    assert _intensity_filter("context-cnn", fine) == {"intensity_filter_px": pytest.approx(2.0)}
    default = SimpleNamespace(patch_size_px=24, patch_size_a=4.8)
    assert _intensity_filter("context-cnn", default) == {"intensity_filter_px": pytest.approx(1.5)}
    assert _intensity_filter("image-only", fine) == {}  # no physics term to set
    assert _intensity_filter("no-such-model", fine) == {}  # create_model reports it
