"""Confusion-matrix PNGs: valid, deterministic, input-sensitive, decodable."""

from __future__ import annotations

import io

import numpy as np
import pytest

from stemsight.report.confusion import confusion_pair_png, confusion_png

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CONFUSION = {"labels": ["M", "V_M", "V_X"], "matrix": [[40, 2, 1], [3, 9, 0], [0, 1, 5]]}


def decode(png: bytes) -> np.ndarray:
    from matplotlib.image import imread

    return imread(io.BytesIO(png), format="png")


def test_png_is_valid_and_decodes_to_an_rgb_image():
    png = confusion_png(CONFUSION, title="context")
    assert png.startswith(PNG_SIGNATURE)
    img = decode(png)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert 150 <= img.shape[0] <= 2000 and 150 <= img.shape[1] <= 2000
    assert img[..., :3].std() > 0  # not a blank canvas


def test_same_input_gives_same_bytes():
    assert confusion_png(CONFUSION, title="context") == confusion_png(CONFUSION, title="context")
    pair = confusion_pair_png(CONFUSION, CONFUSION)
    assert pair == confusion_pair_png(CONFUSION, CONFUSION)


def test_different_input_gives_different_bytes():
    changed = {"labels": CONFUSION["labels"], "matrix": [[40, 2, 1], [3, 8, 1], [0, 1, 5]]}
    base = confusion_png(CONFUSION, title="context")
    assert confusion_png(changed, title="context") != base
    assert confusion_png(CONFUSION, title="image only") != base


def test_pair_is_wider_than_one_panel_and_none_gives_one_panel():
    single = decode(confusion_png(CONFUSION, title="with imaging context"))
    pair = decode(confusion_pair_png(CONFUSION, CONFUSION))
    assert pair.shape[1] > 1.5 * single.shape[1]
    assert confusion_pair_png(CONFUSION, None) == confusion_png(CONFUSION, title="with imaging context")


def test_label_absent_from_truth_row_draws():
    # a label only predicted has an all-zero row: drawn as zero fraction, no division error
    png = confusion_png({"labels": ["M", "V_M"], "matrix": [[3, 1], [0, 0]]}, title="t")
    assert png.startswith(PNG_SIGNATURE)


@pytest.mark.parametrize(
    ("confusion", "match"),
    [
        ({"labels": ["a", "b"], "matrix": [[1, 2, 3]]}, "shape"),
        ({"labels": [], "matrix": []}, "no labels"),
        ({"labels": ["a"]}, "matrix"),
        ({"labels": ["a"], "matrix": [[-1]]}, "non-negative"),
    ],
)
def test_bad_confusion_raises(confusion, match):
    with pytest.raises(ValueError, match=match):
        confusion_png(confusion, title="t")
