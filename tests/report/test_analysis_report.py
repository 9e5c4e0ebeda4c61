"""Analysis pictures and report page: valid, non-blank PNGs that follow the sites; a self-contained page
that states the counts and warnings; and the page as a browser (headless Chromium) renders it."""

from __future__ import annotations

import base64
import dataclasses
import io
import os
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest

from stemsight.report.analysis import entropy_map_png, intensity_png, overlay_png, report_html

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SOURCE = "scan <&> 01.dm4"
N_IMAGES = 4  # overlay, entropy map, column heights, raw image


@pytest.fixture(scope="module")
def analysis():
    from stemsight.analysis.pipeline import analyze_frames
    from stemsight.core.context import ImagingContext
    from stemsight.datasets.simulate import SimulationRequest, simulate_labelled_image

    ctx = ImagingContext(host="MoS2", dopant="V", energy_kev=60, convergence_mrad=30, detector_inner_mrad=80,
                         detector_outer_mrad=200, pixel_size_a=0.1, dose_e_per_a2=1e5)
    fractions = {"D_M": 0.05, "V_M": 0.02, "V_X": 0.05, "V_2X": 0.02}
    item = simulate_labelled_image(SimulationRequest(context=ctx, size_a=40.0, seed=21, fractions=fractions))
    return analyze_frames(item.image, ctx, model="default")


@pytest.fixture(scope="module")
def overlay(analysis):
    return overlay_png(analysis.frames[0], analysis.labels, pixel_size_a=analysis.context.pixel_size_a)


@pytest.fixture(scope="module")
def page(analysis, overlay):
    return report_html(analysis, source=SOURCE, overlay=overlay)


def decode(png: bytes) -> np.ndarray:
    from matplotlib.image import imread

    assert png.startswith(PNG_SIGNATURE)
    return imread(io.BytesIO(png), format="png")


def rgb(png: bytes) -> np.ndarray:
    """(H, W, 3) floats in [0, 1], palette PNGs included."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64) / 255.0


def dopant_red(img: np.ndarray) -> np.ndarray:
    """Pixels of the D_M colour (#ff2020)."""
    return (img[..., 0] > 0.85) & (img[..., 1] < 0.3) & (img[..., 2] < 0.3)


def with_labels(frame, labels):
    return dataclasses.replace(frame, sites={**frame.sites, "label": np.asarray(labels, dtype=str)})


# ------------------------------------------------------------------------------------------- pictures


@pytest.mark.parametrize("kind", ["overlay", "entropy", "intensity"])
def test_pictures_are_valid_sized_and_not_blank(analysis, overlay, kind):
    frame = analysis.frames[0]
    png = {
        "overlay": lambda: overlay,
        "entropy": lambda: entropy_map_png(frame, pixel_size_a=analysis.context.pixel_size_a),
        "intensity": lambda: intensity_png(frame, analysis.labels),
    }[kind]()
    img = decode(png)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert 300 <= img.shape[0] <= 2500 and 500 <= img.shape[1] <= 3000
    assert img[..., :3].var() > 0
    assert len(png) < 3_000_000


def test_overlay_image_area_is_at_least_the_image(analysis):
    # a 400 px image is drawn at no less than its own size: the picture is wider than image + legend
    ny, nx = analysis.frames[0].image.shape
    img = decode(overlay_png(analysis.frames[0], analysis.labels, pixel_size_a=0.1))
    assert img.shape[0] > ny and img.shape[1] > nx + 200


def test_overlay_follows_a_site_relabelled_as_a_defect(analysis, overlay):
    frame = analysis.frames[0]
    label = np.asarray(frame.sites["label"]).astype(str)
    host = np.flatnonzero(label == "M")
    assert host.size >= 2
    changed = label.copy()
    changed[host[len(host) // 2]] = "D_M"
    png = overlay_png(with_labels(frame, changed), analysis.labels, pixel_size_a=0.1)
    assert png != overlay
    assert dopant_red(rgb(png)).sum() > dopant_red(rgb(overlay)).sum() + 20  # one more red D_M disc


def test_overlay_marker_moves_with_the_defect_not_only_the_legend(analysis):
    # same counts (legend identical), the dopant moved from one host site to another: the picture changes
    frame = analysis.frames[0]
    label = np.asarray(frame.sites["label"]).astype(str)
    i, j = np.flatnonzero(label == "M")[[0, -1]]
    first, second = label.copy(), label.copy()
    first[i] = "D_M"
    second[j] = "D_M"
    a = rgb(overlay_png(with_labels(frame, first), analysis.labels, pixel_size_a=0.1))
    b = rgb(overlay_png(with_labels(frame, second), analysis.labels, pixel_size_a=0.1))
    assert a.shape == b.shape
    differs = np.abs(a - b).max(axis=2) > 0.2
    columns = np.flatnonzero(differs.any(axis=0))
    assert columns.size and columns.max() < a.shape[1] - 300  # inside the image, left of the legend panel
    assert (differs & dopant_red(a)).sum() > 20 and (differs & dopant_red(b)).sum() > 20


def test_overlay_marks_out_of_distribution_sites(analysis, overlay):
    frame = analysis.frames[0]
    ood = np.zeros(len(frame.sites["label"]), bool)
    ood[::7] = True
    flagged = dataclasses.replace(frame, sites={**frame.sites, "ood": ood, "ood_site": ood})
    assert overlay_png(flagged, analysis.labels, pixel_size_a=0.1) != overlay
    # a context outside the training range flags every site ('ood') but crosses none of them
    context_only = dataclasses.replace(frame, sites={**frame.sites, "ood": ~ood | ood})
    assert overlay_png(context_only, analysis.labels, pixel_size_a=0.1) == overlay


def test_entropy_map_follows_entropy(analysis):
    frame = analysis.frames[0]
    base = entropy_map_png(frame, pixel_size_a=0.1)
    entropy = np.asarray(frame.sites["entropy"], dtype=float).copy()
    entropy[0] = 0.69 if entropy[0] < 0.3 else 0.0
    changed = dataclasses.replace(frame, sites={**frame.sites, "entropy": entropy})
    assert entropy_map_png(changed, pixel_size_a=0.1) != base


def test_intensity_has_one_panel_per_sublattice(analysis):
    frame = analysis.frames[0]
    both = decode(intensity_png(frame, analysis.labels))
    metal_only = {"_sigma": frame.expected["_sigma"], "M": frame.expected["M"]}
    one = decode(intensity_png(dataclasses.replace(frame, expected=metal_only), analysis.labels))
    assert both.shape[1] > 1.6 * one.shape[1]


def test_pictures_are_deterministic(analysis, overlay):
    assert overlay_png(analysis.frames[0], analysis.labels, pixel_size_a=0.1) == overlay


def test_large_noisy_frame_stays_under_budget(analysis):
    rng = np.random.default_rng(0)
    n = 2048
    sites = {k: np.resize(v, 4000) for k, v in analysis.frames[0].sites.items()}
    sites["x_px"], sites["y_px"] = rng.uniform(0, n, 4000), rng.uniform(0, n, 4000)
    frame = dataclasses.replace(analysis.frames[0], image=rng.poisson(3.0, (n, n)).astype(np.float32),
                                sites=sites)
    png = overlay_png(frame, analysis.labels, pixel_size_a=0.1)
    img = rgb(png)
    assert len(png) < 3_000_000
    assert 1000 <= img.shape[0] <= 1600 and img.var() > 0


def test_bad_inputs_are_refused(analysis):
    frame = analysis.frames[0]
    with pytest.raises(ValueError, match="2D"):
        overlay_png(dataclasses.replace(frame, image=frame.image[None]), analysis.labels, pixel_size_a=0.1)
    with pytest.raises(ValueError, match="pixel_size_a"):
        overlay_png(frame, analysis.labels, pixel_size_a=0.0)


# ----------------------------------------------------------------------------------------------- page


class PageParser(HTMLParser):
    """Tags with their attributes, and the cells of each table row."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    return parser


def test_page_counts_every_class(analysis, page):
    counts = analysis.summary["counts"]
    by_sub = analysis.summary["sites_per_sublattice"]
    rows = {row[0]: row for row in parse(page).rows if row and row[0] in counts}
    assert set(rows) == set(analysis.labels)
    for label, count in counts.items():
        assert rows[label][3] == str(count)
        sub = "M" if label in ("M", "D_M", "V_M") else "X"
        assert rows[label][2] == sub
        assert rows[label][4] == f"{100 * count / by_sub[sub]:.2f} %"
    assert rows["V_M"][5] == f"{analysis.summary['densities_per_nm2']['V_M']:.3g}"
    assert rows["M"][5] == "—"  # no density for host classes


def test_page_escapes_the_source_and_names_version_and_model(analysis, page):
    from stemsight import __version__

    assert SOURCE not in page and "scan &lt;&amp;&gt; 01.dm4" in page
    assert "<title>stemsight analysis: scan &lt;&amp;&gt; 01.dm4</title>" in page
    assert __version__ in page and analysis.summary["model"]["name"] in page
    assert f"{analysis.summary['mean_entropy']:.3f} nats" in page


def test_page_is_self_contained(page):
    parser = parse(page)
    assert not re.search(r"https?://", page)
    refs = [v for _, attrs in parser.tags for k, v in attrs.items() if k in ("src", "href")]
    assert refs and all(v.startswith("data:") for v in refs)
    assert not any(tag in ("script", "link", "iframe", "object") for tag, _ in parser.tags)
    images = [attrs for tag, attrs in parser.tags if tag == "img"]
    assert len(images) == N_IMAGES
    for attrs in images:
        prefix = "data:image/png;base64,"
        assert attrs["src"].startswith(prefix) and attrs["alt"]
        assert base64.b64decode(attrs["src"][len(prefix):]).startswith(PNG_SIGNATURE)


def test_page_embeds_the_given_overlay(page, overlay):
    assert base64.b64encode(overlay).decode() in page


def test_page_shows_the_context(analysis, page):
    rows = {row[0]: row[1] for row in parse(page).rows if len(row) == 2}
    assert rows["host"] == "MoS2" and rows["dopant"] == "V" and rows["energy_kev"] == "60.0"
    assert rows["pixel_size_a_y"] == "—"


def test_page_warns_about_pixel_size_and_context_and_counts_frames(analysis, overlay, page):
    summary = analysis.summary
    assert not summary["calibration"]["pixel_size_reported"] and not summary["ood_context"]
    assert "pixel size looks wrong" not in page and "training range (" not in page
    assert "1 frame" in page
    bad = {**summary, "calibration": {**summary["calibration"], "pixel_size_reported": True,
                                      "pixel_size_error": 0.062}, "ood_context": ["energy_kev"], "n_ood": 375,
           "n_frames": 2}
    warned = report_html(dataclasses.replace(analysis, frames=[analysis.frames[0]] * 2, summary=bad),
                         source="stack.dm4", overlay=overlay)
    assert warned.count("pixel size looks wrong") == 2  # the top line and the calibration section
    assert "+6.20%" in warned
    assert "outside the model's training range (energy_kev)" in warned and "<strong>375</strong>" in warned
    assert "frame 1 of 2" in warned


def test_page_notes_calibration_from_lattice(analysis, overlay):
    summary = analysis.summary
    calibrated = {**summary, "calibration": {**summary["calibration"], "calibrated_from_lattice": True,
                                             "pixel_size_a_used": 0.10213}}
    page = report_html(dataclasses.replace(analysis, summary=calibrated), source="a.dm4", overlay=overlay)
    assert "calibrated from the lattice" in page and "0.10213 Å used" in page
    assert "pixel size looks wrong" not in page


# --------------------------------------------------------------------------------- headless Chromium


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium through selenium. Skips when Chromium is missing outside CI; fails in CI."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    if not (chromium and driver_path and webdriver):
        why = ("chromium/chromium-driver (apt-get install chromium chromium-driver) and selenium "
               "(pip install -e '.[test]') are needed to render report.html")
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {why}: found chromium={chromium}, chromedriver={driver_path}, "
                        f"selenium={'yes' if webdriver else 'no'}")
        pytest.skip(why)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1600",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_report_renders_in_headless_chromium(browser, page, tmp_path):
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    browser.get(path.as_uri())
    state = browser.execute_script(
        "return {ready: document.readyState, title: document.title, images: Array.from(document.images)"
        ".map(i => ({complete: i.complete, w: i.naturalWidth, h: i.naturalHeight})),"
        " overlay: (() => { document.images[0].scrollIntoView();"
        " const r = document.images[0].getBoundingClientRect();"
        " return [r.left, r.top, r.width, r.height]; })(), dpr: window.devicePixelRatio};"
    )
    assert state["ready"] == "complete"
    assert state["title"] == f"stemsight analysis: {SOURCE}"  # escaped in the file, decoded by the browser
    assert len(state["images"]) == N_IMAGES
    assert all(img["complete"] and img["w"] > 0 and img["h"] > 0 for img in state["images"]), state
    png = browser.get_screenshot_as_png()
    (tmp_path / "screenshot.png").write_bytes(png)
    shot = rgb(png)
    assert shot.var() > 0
    # the overlay as laid out on screen is a picture (dark image, coloured sites), not an empty box
    left, top, width, height = (round(v * state["dpr"]) for v in state["overlay"])
    assert width > 300 and height > 200
    region = shot[max(top, 0):top + height, max(left, 0):left + width]
    assert region.size and region.std() > 0.05 and region.mean() < 0.8
