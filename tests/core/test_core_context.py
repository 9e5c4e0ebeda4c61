"""ImagingContext: the JSON contract (round trip, unknown keys, clear errors naming the key) and
dopant-site inference from chemistry."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stemsight.core.context import REQUIRED_KEYS, ImagingContext
from stemsight.core.errors import InputError

VALID = {
    "host": "MoS2",
    "energy_kev": 80.0,
    "convergence_mrad": 30.0,
    "detector_inner_mrad": 80.0,
    "detector_outer_mrad": 200.0,
    "pixel_size_a": 0.15,
}


def test_round_trip_to_dict_from_dict_keeps_every_value():
    ctx = ImagingContext.from_dict(
        {**VALID, "dopant": "V", "defocus_a": -12.5, "cs_mm": 0.001, "dose_e_per_a2": 1e5}
    )
    back = ImagingContext.from_dict(ctx.to_dict())
    assert back == ctx
    assert back.to_dict() == ctx.to_dict()
    assert back.dopant_site == "M"
    assert back.dose_e_per_a2 == 1e5


def test_from_json_reads_a_written_context(tmp_path):
    ctx = ImagingContext.from_dict({**VALID, "host": "WSe2", "dopant": "Nb", "pixel_size_a_y": 0.16})
    path = tmp_path / "meta.json"
    path.write_text(json.dumps(ctx.to_dict()))
    back = ImagingContext.from_json(path)
    assert back == ctx
    assert back.pixel_size_yx_a == (0.16, 0.15)


def test_unknown_keys_are_kept_in_extra_and_written_back():
    data = {**VALID, "operator": "ana", "stage": {"x_um": 1.5}, "extra": [1, 2]}
    ctx = ImagingContext.from_dict(data)
    assert ctx.extra == {"operator": "ana", "stage": {"x_um": 1.5}, "extra": [1, 2]}
    out = ctx.to_dict()
    assert out["operator"] == "ana"
    assert out["stage"] == {"x_um": 1.5}
    assert out["extra"] == [1, 2]
    assert ImagingContext.from_dict(out).extra == ctx.extra


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_every_missing_required_key_is_named(key):
    data = {k: v for k, v in VALID.items() if k != key}
    with pytest.raises(InputError, match=key):
        ImagingContext.from_dict(data)


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_a_required_key_set_to_null_counts_as_missing(key):
    with pytest.raises(InputError, match=key):
        ImagingContext.from_dict({**VALID, key: None})


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"energy_kev": -80.0}, "energy_kev"),
        ({"energy_kev": 0.0}, "energy_kev"),
        ({"energy_kev": math.nan}, "energy_kev"),
        ({"energy_kev": math.inf}, "energy_kev"),
        ({"energy_kev": 10**400}, "energy_kev"),
        ({"energy_kev": True}, "energy_kev"),
        ({"energy_kev": "80"}, "energy_kev"),
        ({"convergence_mrad": 0}, "convergence_mrad"),
        ({"convergence_mrad": -math.inf}, "convergence_mrad"),
        ({"pixel_size_a": 0.0}, "pixel_size_a"),
        ({"pixel_size_a": False}, "pixel_size_a"),
        ({"pixel_size_a_y": -0.1}, "pixel_size_a_y"),
        ({"dose_e_per_a2": 0.0}, "dose_e_per_a2"),
        ({"dose_e_per_a2": math.nan}, "dose_e_per_a2"),
        ({"detector_inner_mrad": 200.0, "detector_outer_mrad": 80.0}, "detector_inner_mrad"),
        ({"detector_inner_mrad": 80.0, "detector_outer_mrad": 80.0}, "detector_inner_mrad"),
        ({"detector_inner_mrad": -1.0}, "detector_inner_mrad"),
        ({"source_size_a": -0.5}, "source_size_a"),
        ({"cs_mm": -1.0}, "cs_mm"),
        ({"defocus_a": math.nan}, "defocus_a"),
        ({"dopant": "Xx"}, "dopant"),
        ({"dopant": ""}, "dopant"),
        ({"dopant": 23}, "dopant"),
        ({"dopant": "V", "dopant_site": "Q"}, "dopant_site"),
        ({"dopant": "V", "dopant_site": "C"}, "dopant_site"),
        ({"dopant_site": "M"}, "dopant_site"),
        ({"dopant": "Mo"}, "dopant"),
        ({"dopant": "S"}, "dopant"),
        ({"dopant": "S", "dopant_site": "X"}, "dopant"),
        ({"host": "MoO2"}, "host"),
        ({"host": 42}, "host"),
    ],
)
def test_impossible_values_are_named(changes, key):
    with pytest.raises(InputError, match=rf"\b{key}\b"):
        ImagingContext.from_dict({**VALID, **changes})


def test_dopant_equal_to_the_host_element_of_graphene_is_rejected():
    with pytest.raises(InputError, match="dopant"):
        ImagingContext.from_dict({**VALID, "host": "graphene", "dopant": "C"})


@pytest.mark.parametrize(
    ("host", "dopant", "site"),
    [
        ("MoS2", "V", "M"),
        ("MoS2", "W", "M"),
        ("MoS2", "Se", "X"),
        ("WS2", "Se", "X"),
        ("WSe2", "S", "X"),
        ("hBN", "C", "N"),
        ("hBN", "Si", "B"),
        ("graphene", "Si", "C"),
        ("graphene", "N", "C"),
    ],
)
def test_dopant_site_is_inferred_from_chemistry(host, dopant, site):
    ctx = ImagingContext.from_dict({**VALID, "host": host, "dopant": dopant})
    assert ctx.dopant_site == site


def test_an_explicit_dopant_site_overrides_the_inference():
    ctx = ImagingContext.from_dict({**VALID, "dopant": "Se", "dopant_site": "M"})
    assert ctx.dopant_site == "M"


def test_from_json_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.json"):
        ImagingContext.from_json(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match=r"bad\.json"):
        ImagingContext.from_json(bad)
    with pytest.raises(InputError, match=re.escape(tmp_path.name)):
        ImagingContext.from_json(tmp_path)  # a folder
    incomplete = tmp_path / "incomplete.json"
    incomplete.write_text(json.dumps({k: v for k, v in VALID.items() if k != "energy_kev"}))
    with pytest.raises(InputError, match=r"incomplete\.json.*energy_kev"):
        ImagingContext.from_json(incomplete)


# --- property tests -----------------------------------------------------------------------------------

_pos = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False)


@st.composite
def valid_contexts(draw):
    inner = draw(st.floats(min_value=0.0, max_value=500.0))
    data = {
        "host": draw(st.sampled_from(["MoS2", "WSe2", "NbTe2", "graphene", "hBN"])),
        "energy_kev": draw(st.floats(min_value=1.0, max_value=5000.0)),
        "convergence_mrad": draw(st.floats(min_value=1e-3, max_value=200.0)),
        "detector_inner_mrad": inner,
        "detector_outer_mrad": inner + draw(_pos),
        "pixel_size_a": draw(_pos),
        "pixel_size_a_y": draw(st.none() | _pos),
        "defocus_a": draw(st.floats(min_value=-1e4, max_value=1e4)),
        "cs_mm": draw(st.floats(min_value=0.0, max_value=10.0)),
        "source_size_a": draw(st.floats(min_value=0.0, max_value=5.0)),
        "dose_e_per_a2": draw(st.none() | st.floats(min_value=1e-3, max_value=1e9)),
        "tilt_mrad": draw(st.floats(min_value=-50.0, max_value=50.0)),
    }
    if draw(st.booleans()):
        data["note"] = draw(st.text(max_size=20))
    return data


@settings(max_examples=150, deadline=None)
@given(valid_contexts())
def test_round_trip_through_json_is_exact(data):
    ctx = ImagingContext.from_dict(data)
    text = json.dumps(ctx.to_dict())
    back = ImagingContext.from_dict(json.loads(text))
    assert back == ctx
    assert back.to_dict() == ctx.to_dict()
    for key, value in data.items():
        assert back.to_dict()[key] == value


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_keys = st.sampled_from(
    [*REQUIRED_KEYS, "dopant", "dopant_site", "pixel_size_a_y", "dose_e_per_a2", "cs_mm", "extra"]
) | st.text(max_size=6)
_plausible = st.sampled_from(["MoS2", "graphene", "hBN", "V", "Se", "M", "X", "C", 0, 1, 80.0, 200.0, -1])


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        _json,
        st.dictionaries(_keys, _json | _plausible, max_size=12),
        st.fixed_dictionaries({k: _json | _plausible for k in REQUIRED_KEYS}),
        st.fixed_dictionaries(
            {
                **{k: st.just(v) for k, v in VALID.items()},
                "dopant": _json | _plausible,
                "dopant_site": _json | _plausible,
            }
        ),
    )
)
def test_garbage_raises_only_input_error(data):
    try:
        ctx = ImagingContext.from_dict(data)
    except InputError as exc:
        assert str(exc)
    else:  # the rare garbage that is valid must survive the round trip
        assert ImagingContext.from_dict(ctx.to_dict()) == ctx
