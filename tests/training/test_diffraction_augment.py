"""diffraction_augment: the 8 symmetries of the square move a pattern's direction exactly as their angle
map says (proved on patterns with a spot at a known angle), about either centre convention, on numpy and
torch alike; augment_batch keeps every label true to its pattern and is reproducible from its generator."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from stemsight.training.diffraction_augment import (
    N_DIRECTIONS,
    POLARIZATION_ANGLES_DEG,
    SymmetryOp,
    apply_symmetry,
    augment_batch,
    renoise_poisson,
    shift_patterns,
    symmetry_ops,
)

SIZE = 64
OPS = symmetry_ops()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def centre_px(size: int, centre: str = "pixel") -> float:
    return size // 2 if centre == "pixel" else (size - 1) / 2


def spot_pattern(
    angle_deg: float, *, size: int = SIZE, centre: str = "pixel", radius_px: float = 18.0, disk: float = 0.5
) -> np.ndarray:
    """A soft disk about the centre (fourfold symmetric) plus a Gaussian spot at (kx, ky) = r·(cos θ, sin θ)
    from it: row = centre + ky, column = centre + kx."""
    c = centre_px(size, centre)
    ky, kx = np.mgrid[0:size, 0:size] - c
    t = np.deg2rad(angle_deg)
    spot = np.exp(-((kx - radius_px * np.cos(t)) ** 2 + (ky - radius_px * np.sin(t)) ** 2) / (2 * 2.0**2))
    return (disk / (1 + np.exp((np.hypot(kx, ky) - 8.0) / 0.7)) + spot).astype(np.float32)


def measured_angle(patterns, centre: str = "pixel") -> np.ndarray:
    """Direction (degrees in [0, 360), from +x toward +y) of each pattern's intensity centroid about the
    centre; the symmetric disk adds nothing to it."""
    p = np.asarray(patterns, dtype=np.float64)
    c = centre_px(p.shape[-1], centre)
    ky, kx = np.mgrid[0 : p.shape[-2], 0 : p.shape[-1]] - c
    mass = p.sum(axis=(-2, -1))
    return (
        np.rad2deg(np.arctan2((p * ky).sum(axis=(-2, -1)) / mass, (p * kx).sum(axis=(-2, -1)) / mass)) % 360
    )


def angle_difference(a, b) -> np.ndarray:
    return np.abs((np.asarray(a) - np.asarray(b) + 180) % 360 - 180)


# -- the operations and their label maps --------------------------------------------------------------------
def test_eight_distinct_operations_with_the_documented_angle_maps():
    assert [op.name for op in OPS] == [
        "identity",
        "rot90",
        "rot180",
        "rot270",
        "flip_ky",
        "transpose",
        "flip_kx",
        "antitranspose",
    ]
    theta = np.array([0.0, 30.0, 45.0, 100.0, 315.0])
    expected = {
        "identity": theta,
        "rot90": theta + 90,
        "rot180": theta + 180,
        "rot270": theta + 270,
        "flip_ky": -theta,
        "transpose": 90 - theta,
        "flip_kx": 180 - theta,
        "antitranspose": 270 - theta,
    }
    for op in OPS:
        np.testing.assert_allclose(op.map_angle(theta), expected[op.name] % 360, atol=1e-12)
    pattern = spot_pattern(30.0)
    images = [op.apply(pattern) for op in OPS]
    assert all(not np.array_equal(a, b) for a, b in itertools.combinations(images, 2))


@pytest.mark.parametrize("n", [5, 6])
def test_about_the_grid_middle_the_operations_are_plain_array_operations(n):
    p = np.random.default_rng(0).random((2, n, n))
    by_name = {op.name: op.apply(p, centre="grid") for op in OPS}
    np.testing.assert_array_equal(by_name["identity"], p)
    np.testing.assert_array_equal(by_name["flip_kx"], p[..., :, ::-1])  # kx → −kx: reverse the columns
    np.testing.assert_array_equal(by_name["flip_ky"], p[..., ::-1, :])  # ky → −ky: reverse the rows
    np.testing.assert_array_equal(by_name["transpose"], p.swapaxes(-1, -2))
    np.testing.assert_array_equal(by_name["rot180"], p[..., ::-1, ::-1])
    i, j = np.mgrid[0:n, 0:n]
    np.testing.assert_array_equal(by_name["rot90"], p[:, n - 1 - j, i])  # new(ky, kx) = old(−kx, ky)
    for op in OPS:  # odd sizes: both conventions agree; even: only where the centre does not matter
        agree = n % 2 == 1 or op.name in ("identity", "transpose")  # transpose fixes any (c, c)
        assert np.array_equal(op.apply(p, centre="pixel"), by_name[op.name]) == agree, op.name


def test_about_the_centre_pixel_the_direct_beam_stays_and_mirrors_are_exact():
    p = np.random.default_rng(1).random((6, 6))
    p[3, 3] = 10.0  # the direct beam at (H // 2, W // 2)
    for op in OPS:
        out = op.apply(p)  # centre="pixel" by default
        assert out[3, 3] == 10.0 and np.isclose(out.sum(), p.sum())
    flip_kx = apply_symmetry(p, None, "flip_kx")[0]
    np.testing.assert_array_equal(flip_kx[:, 1:], p[:, :0:-1])  # kx = c + d ↔ c − d, column 0 alone
    np.testing.assert_array_equal(flip_kx[:, 0], p[:, 0])
    with pytest.raises(ValueError, match="centre: expected one of pixel, grid"):
        OPS[1].apply(p, centre="middle")


@pytest.mark.parametrize(("size", "centre"), [(64, "pixel"), (64, "grid"), (63, "pixel")])
@pytest.mark.parametrize("theta", [0.0, 30.0, 45.0, 135.0, 200.0, 315.0])
def test_spot_direction_after_each_operation_is_the_mapped_angle(theta, size, centre):
    pattern = spot_pattern(theta, size=size, centre=centre)
    assert angle_difference(measured_angle(pattern, centre), theta) < 0.05
    for op in OPS:
        for data in (pattern, torch.from_numpy(pattern)):
            out, angle = apply_symmetry(data, theta, op, centre=centre)
            assert type(out) is type(data) and out.shape == data.shape
            assert angle_difference(measured_angle(out, centre), angle) < 0.05, op.name


def test_class_map_agrees_with_angle_map_and_is_a_permutation():
    classes = np.arange(N_DIRECTIONS)
    angles = np.array(POLARIZATION_ANGLES_DEG)
    np.testing.assert_array_equal(angles, 45.0 * classes)
    for op in OPS:
        mapped = op.map_class(classes)
        np.testing.assert_array_equal(45.0 * mapped, op.map_angle(angles))
        assert sorted(mapped.tolist()) == classes.tolist()
        assert torch.equal(op.map_class(torch.arange(8)), torch.from_numpy(mapped))
        # the class map of a spot at a class angle is what the spot shows after the operation
        batch = np.stack([spot_pattern(a) for a in angles])
        shown = np.round(measured_angle(op.apply(batch)) / 45.0).astype(int) % 8
        np.testing.assert_array_equal(shown, mapped)
    assert OPS[1].map_class(7) == 1 and OPS[6].map_class(1) == 3  # 315° + 90° = 45°; 180° − 45° = 135°
    assert OPS[6].map_class([0, 1]).tolist() == [4, 3] and OPS[6].map_angle([0, 45]).tolist() == [180, 135]
    with pytest.raises(ValueError, match="multiple of 4"):
        OPS[1].map_class(1, n_classes=6)


@pytest.mark.parametrize("centre", ["pixel", "grid"])
def test_operations_form_a_group_on_arrays_and_labels(centre):
    p = spot_pattern(30.0, centre=centre)
    images = {op.name: op.apply(p, centre=centre) for op in OPS}
    for a, b in itertools.product(OPS, OPS):  # the composition of two is one of the eight, labels too
        composed = b.apply(a.apply(p, centre=centre), centre=centre)
        [match] = [op for op in OPS if np.array_equal(images[op.name], composed)]
        np.testing.assert_array_equal(b.map_class(a.map_class(np.arange(8))), match.map_class(np.arange(8)))


def test_numpy_and_torch_agree_and_lookup_by_name_or_index():
    p = np.random.default_rng(1).random((3, 1, 8, 8)).astype(np.float32)
    for (k, op), centre in itertools.product(enumerate(OPS), ["pixel", "grid"]):
        from_numpy, _ = apply_symmetry(p, None, op.name, centre=centre)
        from_torch, angles = apply_symmetry(
            torch.from_numpy(p), torch.tensor([10.0, 100.0]), k, centre=centre
        )
        np.testing.assert_array_equal(from_numpy, from_torch.numpy())
        assert torch.allclose(angles, torch.from_numpy(op.map_angle(np.array([10.0, 100.0]))).float())
    with pytest.raises(ValueError, match=r"unknown symmetry 'mirror'.*flip_kx"):
        apply_symmetry(p, 0.0, "mirror")
    assert isinstance(OPS[0], SymmetryOp)


def test_non_square_patterns_swap_shape_under_quarter_turns():
    p = np.zeros((4, 6))
    assert apply_symmetry(p, 0.0, "transpose")[0].shape == (6, 4)
    assert apply_symmetry(p, 0.0, "flip_kx")[0].shape == (4, 6)


# -- augment_batch -------------------------------------------------------------------------------------------
def _class_batch(repeats: int = 3, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(N_DIRECTIONS).repeat(repeats)
    x = torch.from_numpy(np.stack([spot_pattern(45.0 * int(c), **kw) for c in y]))[:, None]
    return x, y


def test_augmented_labels_match_the_augmented_patterns():
    x, y = _class_batch(disk=0.0)  # a spot alone: its direction survives a shift of 2 px (18 px out)
    xa, ya = augment_batch(x, y, torch.Generator().manual_seed(0), max_shift_px=2)
    assert xa.shape == x.shape and ya.shape == y.shape and ya.dtype == y.dtype
    assert not torch.equal(ya, y)  # some labels did change
    shown = np.round(measured_angle(xa[:, 0].numpy()) / 45.0).astype(int) % 8
    np.testing.assert_array_equal(shown, ya.numpy())
    x, y = _class_batch()  # with the disk, no shift: the direction is exact
    xa, ya = augment_batch(x, y, torch.Generator().manual_seed(1), max_shift_px=0)
    assert (angle_difference(measured_angle(xa[:, 0].numpy()), 45.0 * ya.numpy()) < 0.05).all()


def test_augmentation_is_reproducible_from_the_generator():
    x, y = _class_batch(repeats=2)
    kw = dict(max_shift_px=2, counts=1e4)
    first = augment_batch(x, y, torch.Generator().manual_seed(5), **kw)
    second = augment_batch(x, y, torch.Generator().manual_seed(5), **kw)
    other = augment_batch(x, y, torch.Generator().manual_seed(6), **kw)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])


def test_intensity_scale_lies_in_its_range_and_without_symmetries_labels_stay():
    x, y = _class_batch(repeats=4)
    xa, ya = augment_batch(
        x, y, torch.Generator().manual_seed(2), symmetries=False, max_shift_px=0, scale_range=(0.5, 2.0)
    )
    assert torch.equal(ya, y)
    ratio = xa / x
    per_pattern = ratio[:, 0, 0, 0]
    assert torch.allclose(ratio, per_pattern[:, None, None, None].expand_as(ratio), rtol=1e-5)
    assert (per_pattern >= 0.5 - 1e-6).all() and (per_pattern <= 2.0 + 1e-6).all()
    assert per_pattern.std() > 0.1


def test_shift_moves_the_content_and_repeats_the_edges():
    x = torch.zeros(2, 1, 9, 9)
    x[:, 0, 4, 4] = 1.0
    x[:, 0, :, 0] = 0.5  # a left edge column to be repeated
    out = shift_patterns(x, torch.tensor([[2, -1], [-3, 2]]))
    assert out[0, 0, 6, 3] == 1.0 and out[1, 0, 1, 6] == 1.0
    assert (out[1, 0, :, :3] == 0.5).all()  # shifted right by 2: the edge column fills columns 0..2
    assert torch.equal(shift_patterns(x, torch.zeros(2, 2, dtype=torch.int64)), x)
    with pytest.raises(ValueError, match=r"shifts: expected integer \(B, 2\)"):
        shift_patterns(x, torch.zeros(2, 2))


def test_poisson_renoising_counts_whole_electrons_and_keeps_the_mean():
    x = torch.from_numpy(spot_pattern(0.0))[None, None].repeat(64, 1, 1, 1)
    counts = 2000.0
    noisy = renoise_poisson(x, counts, torch.Generator().manual_seed(3))
    electrons = noisy * counts / x[0].sum()  # every pattern has the same total
    assert torch.allclose(electrons, electrons.round(), atol=1e-3) and (noisy >= 0).all()
    assert abs(float(noisy.sum(dim=(1, 2, 3)).mean() / x[0].sum()) - 1) < 0.01
    assert torch.allclose(noisy.mean(dim=0), x[0], atol=0.15 * float(x.max()))
    assert torch.equal(renoise_poisson(torch.zeros(1, 1, 4, 4), counts), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="non-negative"):
        renoise_poisson(-x, counts)


def test_augment_batch_refuses_bad_inputs():
    x, y = _class_batch(repeats=1)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="square patterns"):
        augment_batch(torch.zeros(8, 1, 32, 40), y, g)
    with pytest.raises(ValueError, match=r"y: expected integer classes of shape \(8,\)"):
        augment_batch(x, y.float(), g)
    with pytest.raises(ValueError, match=r"y: classes must lie in \[0, 8\)"):
        augment_batch(x, y + 1, g)
    with pytest.raises(ValueError, match=r"x: expected a floating \(B, C, H, W\)"):
        augment_batch(x[:, 0], y, g)
