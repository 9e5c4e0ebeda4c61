"""Pictures and the HTML page of an image analysis (`stemsight.analysis.pipeline.Analysis`).

`overlay_png` (every site coloured by class), `entropy_map_png` (sites coloured by posterior entropy),
`intensity_png` (measured column heights against the heights the physics predicts per class) and
`report_html` (one self-contained page: PNGs inline as data URIs, inline CSS, no script, nothing fetched).
All drawing goes through an explicit `Figure` + Agg canvas; PNG bytes are deterministic (no timestamps).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from stemsight.analysis.pipeline import Analysis, FrameAnalysis
from stemsight.core.labels import DOPANT_LABELS, HOST_LABELS, VACANCY_LABELS, sublattice_labels

DPI = 100
LEGEND_PX = 350
"""Width of the panel beside the image that holds the legend or the colour bar."""
MARGIN_PX = 12
TITLE_PX = 34
DISPLAY_PX = (600, 1280)
"""The image's longer side is drawn at its own size within these bounds (so 512² to 2048² images give
pictures of about 0.6 to 2 megapixels)."""
PNG_BUDGET = 2_500_000
"""A picture whose RGB PNG is larger (a very noisy image drawn big) is stored with a 256-colour palette."""

LABEL_COLOURS = {
    # host classes: muted, small
    "M": "#7f9cc4", "X2": "#c9b37e", "H": "#8fb38f",
    # dopants: strong, filled, larger, dark edge
    "D_M": "#ff2020", "D_X": "#ff8c00", "D_2X": "#ffd700", "D": "#ff2020",
    # vacancies: strong, open circles
    "V_M": "#00e5ff", "V_X": "#7cfc00", "V_2X": "#ff4dff", "V": "#00e5ff",
}  # fmt: skip
LABEL_MEANINGS = {
    "M": "host metal", "D_M": "dopant on a metal site", "V_M": "empty metal site",
    "X2": "chalcogen pair, both host", "V_X": "one chalcogen missing", "V_2X": "both chalcogens missing",
    "D_X": "one chalcogen → dopant", "D_2X": "both chalcogens → dopant",
    "H": "host atom", "D": "dopant", "V": "vacancy",
}  # fmt: skip
OOD_COLOUR = "#ffffff"
ENTROPY_CMAP = "viridis"
ENTROPY_VMAX = math.log(2.0)
"""Colour scale top: ln 2 nats, a 50/50 choice between two classes; higher values share its colour."""


# ---------------------------------------------------------------------------------------------- drawing


def _colour(label: str) -> str:
    if label in LABEL_COLOURS:
        return LABEL_COLOURS[label]
    from matplotlib import colormaps

    rgba = colormaps["tab10"](sum(map(ord, label)) % 10)
    return "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in rgba[:3]))


def _png(fig: Any) -> bytes:
    """Opaque RGB PNG of `fig` through an explicit Agg canvas (smaller than matplotlib's RGBA PNG), or a
    256-colour one beyond `PNG_BUDGET`; no metadata, so the same figure gives the same bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    picture = Image.fromarray(np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[..., :3]))
    buf = io.BytesIO()
    picture.save(buf, format="png", compress_level=9)
    if buf.tell() > PNG_BUDGET:
        buf = io.BytesIO()
        palette = picture.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        palette.save(buf, format="png", compress_level=9)
    return buf.getvalue()


def _check_frame(frame: FrameAnalysis) -> tuple[int, int]:
    image = np.asarray(frame.image)
    if image.ndim != 2:
        raise ValueError(f"frame.image must be 2D (ny, nx), got shape {image.shape}")
    missing = {"x_px", "y_px", "sublattice", "label"} - set(frame.sites)
    if missing:
        raise ValueError(f"frame.sites lacks columns {sorted(missing)}")
    return image.shape


def _image_figure(frame: FrameAnalysis, *, panel_px: int, title: str, faded: bool = False) -> tuple:
    """(fig, image axes, display px per image px): the image in grey at a size set by its own, with a
    `panel_px` wide strip on the right for a legend or colour bar and a title line above."""
    from matplotlib.figure import Figure

    ny, nx = _check_frame(frame)
    scale = float(np.clip(max(ny, nx), *DISPLAY_PX)) / max(ny, nx)
    w_px, h_px = nx * scale, ny * scale
    fig_w = w_px + panel_px + 2 * MARGIN_PX
    fig_h = max(h_px, 360) + TITLE_PX + MARGIN_PX
    fig = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI, facecolor="white")
    ax = fig.add_axes((MARGIN_PX / fig_w, (fig_h - TITLE_PX - h_px) / fig_h, w_px / fig_w, h_px / fig_h))
    image = np.asarray(frame.image, dtype=np.float64)
    finite = image[np.isfinite(image)]
    lo, hi = np.percentile(finite, [0.5, 99.8]) if finite.size else (0.0, 1.0)
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1.0, alpha=0.4 if faded else 1.0)
    ax.set_xlim(-0.5, nx - 0.5)
    ax.set_ylim(ny - 0.5, -0.5)
    ax.set_axis_off()
    fig.text(MARGIN_PX / fig_w, 1 - 8 / fig_h, title, ha="left", va="top", fontsize=12)
    return fig, ax, scale


def _nice_length_nm(width_nm: float) -> float:
    """A round scale-bar length near a fifth of the image width."""
    target = width_nm / 5.0
    if not target > 0:
        return 1.0
    decade = 10.0 ** math.floor(math.log10(target))
    return max(step * decade for step in (1.0, 2.0, 5.0) if step * decade <= target)


def _scale_bar(ax: Any, shape: tuple[int, int], pixel_size_a: float) -> None:
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    if not (pixel_size_a > 0 and math.isfinite(pixel_size_a)):
        raise ValueError(f"pixel_size_a must be a positive number, got {pixel_size_a!r}")
    ny, nx = shape
    length_nm = _nice_length_nm(nx * pixel_size_a / 10.0)
    bar = AnchoredSizeBar(
        ax.transData, length_nm * 10.0 / pixel_size_a, f"{length_nm:g} nm", "lower left", pad=0.4,
        borderpad=0.6, sep=4, color="white", frameon=True, size_vertical=max(2.0, 0.008 * ny),
        fontproperties={"size": 11, "weight": "bold"},
    )  # fmt: skip
    bar.patch.set(facecolor="black", alpha=0.55, edgecolor="none")
    ax.add_artist(bar)


def _marker_diameters_pt(frame: FrameAnalysis, scale: float) -> tuple[float, float]:
    """(host, defect) marker diameters in points from the nearest-neighbour spacing on screen."""
    a_px = float(frame.a_px) if np.isfinite(frame.a_px) and frame.a_px > 0 else max(frame.image.shape) / 20
    spacing_pt = a_px / math.sqrt(3.0) * scale * 72.0 / DPI
    return float(np.clip(0.28 * spacing_pt, 2.0, 8.0)), float(np.clip(0.62 * spacing_pt, 5.0, 16.0))


def _class_order(frame: FrameAnalysis, labels: Sequence[str]) -> list[str]:
    """`labels` in order, then any label the sites carry that `labels` lacks."""
    order = [str(label) for label in labels]
    extra = sorted(set(map(str, frame.sites["label"])) - set(order))
    return order + extra


def _draw_sites(ax: Any, frame: FrameAnalysis, order: list[str], sizes: tuple[float, float]) -> list:
    """Scatter every class (hosts under defects); returns legend handles with counts."""
    from matplotlib.lines import Line2D

    host_d, defect_d = sizes
    x, y = np.asarray(frame.sites["x_px"]), np.asarray(frame.sites["y_px"])
    label = np.asarray(frame.sites["label"]).astype(str)
    handles = []
    for name in order:
        sel = label == name
        colour = _colour(name)
        if name in HOST_LABELS:
            style = {"s": host_d**2, "c": colour, "linewidths": 0, "alpha": 0.85, "zorder": 2}
            handle = {"marker": "o", "markersize": host_d + 2, "markerfacecolor": colour,
                      "markeredgewidth": 0}
        elif name in VACANCY_LABELS:
            style = {"s": defect_d**2, "facecolors": "none", "edgecolors": colour, "linewidths": 2.0,
                     "zorder": 3}
            handle = {"marker": "o", "markersize": 10, "markerfacecolor": "none", "markeredgecolor": colour,
                      "markeredgewidth": 2.0}
        else:  # dopants and anything unknown: strong, filled, edged
            style = {"s": defect_d**2, "c": colour, "edgecolors": "black", "linewidths": 0.9, "zorder": 3}
            handle = {"marker": "o", "markersize": 10, "markerfacecolor": colour, "markeredgecolor": "black",
                      "markeredgewidth": 0.9}
        if sel.any():
            ax.scatter(x[sel], y[sel], **style)
        text = f"{name}  {LABEL_MEANINGS.get(name, '')}  ({int(sel.sum())})".replace("    ", "  ")
        handles.append(Line2D([], [], linestyle="none", label=text, **handle))
    return handles


def _draw_ood(ax: Any, frame: FrameAnalysis, defect_d: float) -> Any:
    from matplotlib import patheffects
    from matplotlib.lines import Line2D

    # per-site flags (intensities the context cannot explain); a context outside the training range flags
    # every site and is a warning of the report, not a cross on each one
    flags = frame.sites.get("ood_site", frame.sites.get("ood"))
    ood = np.asarray(flags if flags is not None else np.zeros(len(frame.sites["x_px"]), bool), dtype=bool)
    outline = [patheffects.withStroke(linewidth=3.2, foreground="black")]
    if ood.any():
        ax.scatter(np.asarray(frame.sites["x_px"])[ood], np.asarray(frame.sites["y_px"])[ood], marker="x",
                   s=(1.1 * defect_d) ** 2, c=OOD_COLOUR, linewidths=1.6, zorder=4, path_effects=outline)
    return Line2D([], [], linestyle="none", marker="x", markersize=10, markeredgewidth=1.6,
                  color=OOD_COLOUR, path_effects=outline, label=f"out of distribution  ({int(ood.sum())})")


def overlay_png(frame: FrameAnalysis, labels: Sequence[str], *, pixel_size_a: float) -> bytes:
    """PNG bytes: the image in grey, each site a dot in its class's colour (defects larger and edged,
    vacancies open), out-of-distribution sites crossed, a legend with counts and a scale bar in nm."""
    n = len(frame.sites["label"])
    fig, ax, scale = _image_figure(frame, panel_px=LEGEND_PX, title=f"Sites by class  (N = {n})")
    sizes = _marker_diameters_pt(frame, scale)
    handles = _draw_sites(ax, frame, _class_order(frame, labels), sizes)
    handles.append(_draw_ood(ax, frame, sizes[1]))
    _scale_bar(ax, frame.image.shape, pixel_size_a)
    x0 = ax.get_position().x1 + 8 / (fig.get_figwidth() * DPI)
    legend = fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(x0, ax.get_position().y1),
                        fontsize=9, title="class (count)", title_fontsize=10, frameon=False,
                        handletextpad=0.4, labelspacing=0.7, borderaxespad=0.0)
    legend.get_frame().set_facecolor("white")
    return _png(fig)


def entropy_map_png(frame: FrameAnalysis, *, pixel_size_a: float) -> bytes:
    """PNG bytes: sites coloured (and sized) by posterior entropy in nats over the faded image, with a
    colour bar whose top is ln 2 (a 50/50 choice between two classes)."""
    from matplotlib.colors import Normalize

    entropy = np.asarray(frame.sites["entropy"], dtype=np.float64)
    mean = float(entropy.mean()) if entropy.size else 0.0
    fig, ax, scale = _image_figure(frame, panel_px=LEGEND_PX // 2, title=(
        f"Posterior entropy per site  (mean {mean:.3f} nats)"), faded=True)
    host_d, defect_d = _marker_diameters_pt(frame, scale)
    order = np.argsort(entropy, kind="stable")  # the most uncertain drawn last, on top
    weight = np.clip(entropy[order] / ENTROPY_VMAX, 0.0, 1.0)
    norm = Normalize(vmin=0.0, vmax=ENTROPY_VMAX)
    points = ax.scatter(
        np.asarray(frame.sites["x_px"])[order], np.asarray(frame.sites["y_px"])[order],
        c=entropy[order], cmap=ENTROPY_CMAP, norm=norm, s=(1.4 * host_d + weight * (defect_d - host_d)) ** 2,
        edgecolors="#303030", linewidths=0.4, zorder=3,
    )  # fmt: skip
    _scale_bar(ax, frame.image.shape, pixel_size_a)
    box = ax.get_position()
    fig_w = fig.get_figwidth() * DPI
    cax = fig.add_axes((box.x1 + 20 / fig_w, box.y0 + 0.1 * box.height, 18 / fig_w, 0.8 * box.height))
    bar = fig.colorbar(points, cax=cax, extend="max")
    bar.set_label("posterior entropy (nats)")
    ticks = [0.0, 0.2, 0.4, 0.6, ENTROPY_VMAX]
    bar.set_ticks(ticks, labels=[f"{t:.1f}" for t in ticks[:-1]] + ["ln 2"])
    return _png(fig)


def intensity_png(frame: FrameAnalysis, labels: Sequence[str]) -> bytes:
    """PNG bytes: per sublattice, histograms of the measured column heights (`intensity`, relative to
    the first sublattice's host columns) by assigned class, with a line at each class's predicted height
    from `frame.expected` and a band of ±2 σ (the host columns' robust spread)."""
    from matplotlib.figure import Figure

    sites = frame.sites
    if "intensity" not in sites:
        raise ValueError("frame.sites lacks the 'intensity' column")
    sub_of = np.asarray(sites["sublattice"]).astype(str)
    label = np.asarray(sites["label"]).astype(str)
    height = np.asarray(sites["intensity"], dtype=np.float64)
    subs = [s for s in frame.expected if s != "_sigma"] or list(dict.fromkeys(sub_of))
    if not subs:
        raise ValueError("frame has neither sites nor expected heights to plot")
    fig = Figure(figsize=(5.6 * len(subs), 3.9), dpi=DPI, layout="constrained", facecolor="white")
    axes = np.atleast_1d(fig.subplots(1, len(subs), squeeze=False)[0])
    order = _class_order(frame, labels)
    for ax, sub in zip(axes, subs, strict=True):
        _draw_heights(ax, sub, height[sub_of == sub], label[sub_of == sub], frame.expected, order)
    fig.suptitle("Measured column heights against the heights the context predicts", fontsize=11)
    return _png(fig)


def _draw_heights(ax: Any, sub: str, height: np.ndarray, label: np.ndarray, expected: Mapping, order) -> None:
    predicted = {str(k): float(v) for k, v in expected.get(sub, {}).items()}
    sigma = float(expected.get("_sigma", {}).get(sub, 0.0))
    finite = height[np.isfinite(height)]
    values = [*finite.tolist(), *predicted.values(), 0.0]
    lo, hi = min(values), max(values)
    pad = 0.08 * (hi - lo or 1.0)
    bins = np.linspace(lo - pad, hi + pad, 61)
    for name in order:
        sel = (label == name) & np.isfinite(height)
        if sel.any():
            ax.hist(height[sel], bins=bins, histtype="stepfilled", alpha=0.65, color=_colour(name),
                    edgecolor="black", linewidth=0.5, label=f"{name} ({int(sel.sum())})")
    ax.set_yscale("log")
    ax.set_ylim(0.7, max(10.0, 30.0 * np.histogram(finite, bins=bins)[0].max(initial=1)))
    for name, h in predicted.items():
        colour = _colour(name)
        if sigma > 0:
            ax.axvspan(h - 2 * sigma, h + 2 * sigma, color=colour, alpha=0.12, linewidth=0)
        ax.axvline(h, color=colour, linestyle="--", linewidth=1.6)
        ax.axvline(h, color="black", linestyle=(0, (1, 5)), linewidth=0.6)
    top = ax.secondary_xaxis("top")
    top.set_xticks(list(predicted.values()), labels=[f"{k}\n{v:.2f}" for k, v in predicted.items()],
                   fontsize=8)
    ax.set_xlim(bins[0], bins[-1])
    ax.set_xlabel("column height (relative to the host columns of the first sublattice)")
    ax.set_ylabel("sites")
    ax.set_title(f"sublattice {sub}: {height.size} sites; dashed = predicted, band = ±2σ", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper center", title="assigned class", title_fontsize=8, ncols=2)


def _image_png(frame: FrameAnalysis, *, pixel_size_a: float) -> bytes:
    ny, nx = frame.image.shape
    fig, ax, _ = _image_figure(frame, panel_px=0, title=f"Image  ({nx} × {ny} px, {pixel_size_a:g} Å/px)")
    _scale_bar(ax, frame.image.shape, pixel_size_a)
    return _png(fig)


# ------------------------------------------------------------------------------------------------- HTML

CSS = """
body { margin: 0; background: #f4f5f7; color: #1d2430; font: 15px/1.5 system-ui, -apple-system, "Segoe UI",
  Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; min-height: 100vh; }
h1 { font-size: 1.6em; margin: 0 0 4px; word-break: break-all; }
h2 { font-size: 1.2em; margin: 32px 0 8px; border-bottom: 1px solid #dde1e6; padding-bottom: 4px; }
p.sub { color: #5a6473; margin: 0 0 16px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 0.93em; }
th, td { border: 1px solid #dde1e6; padding: 4px 10px; text-align: left; vertical-align: top; }
thead th { background: #eef1f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.defect th { color: #a0111f; }
.warn { background: #fff4d6; border-left: 5px solid #e0a000; padding: 8px 14px; margin: 10px 0; }
.note { background: #eaf3ff; border-left: 5px solid #4a8be0; padding: 8px 14px; margin: 10px 0; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid #dde1e6; }
figcaption { color: #5a6473; font-size: 0.9em; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: 0.95em; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure(png: bytes, alt: str, caption: str) -> str:
    return (f'<figure><img src="{_data_uri(png)}" alt="{_e(alt)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


class _Num(str):
    """A table cell holding a number (right-aligned)."""


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], *, row_class: Sequence[str] = ()) -> str:
    """Rows of already-escaped cells (the first is the row's header; `_Num` cells are right-aligned)."""
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for k, row in enumerate(rows):
        cls = f' class="{row_class[k]}"' if k < len(row_class) and row_class[k] else ""
        cells = [f'<th scope="row">{row[0]}</th>']
        cells += [f'<td class="num">{c}</td>' if isinstance(c, _Num) else f"<td>{c}</td>" for c in row[1:]]
        out.append(f"<tr{cls}>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _counts_section(analysis: Analysis) -> str:
    s = analysis.summary
    counts, by_sub = s.get("counts", {}), s.get("sites_per_sublattice", {})
    densities = s.get("densities_per_nm2", {})
    host = analysis.context.host_spec
    rows, classes = [], []
    for label in [*analysis.labels, *(k for k in counts if k not in analysis.labels)]:
        subs = [sub for sub in by_sub if label in sublattice_labels(host, sub)]
        total = sum(by_sub[sub] for sub in subs)
        count = int(counts.get(label, 0))
        fraction = _Num(f"{100.0 * count / total:.2f} %" if total else "—")
        density = _Num(f"{densities[label]:.3g}" if label in densities else "—")
        rows.append([_e(label), _e(LABEL_MEANINGS.get(label, "")), _e(", ".join(subs) or "—"),
                     _Num(count), fraction, density])
        classes.append("defect" if label in DOPANT_LABELS | VACANCY_LABELS and count else "")
    table = _table(["class", "meaning", "sublattice", "count", "fraction of sublattice", "density per nm²"],
                   rows, row_class=classes)
    per_sub = ", ".join(f"{_e(k)}: {int(v)}" for k, v in by_sub.items())
    facts = (f"<p>{int(s.get('n_sites', 0))} sites ({per_sub}) on {float(s.get('area_nm2', 0.0)):.4g} nm²; "
             f"mean posterior entropy {float(s.get('mean_entropy', 0.0)):.3f} nats.</p>")
    return "<h2>Sites by class</h2>" + table + facts + _ood_notes(s)


def _ood_notes(summary: Mapping[str, Any]) -> str:
    n_ood, reasons = int(summary.get("n_ood", 0)), list(summary.get("ood_context") or [])
    per_site = summary.get("ood_sites") or {}
    detail = ""
    if per_site:
        detail = (f": {int(per_site.get('column_height', 0))} with a column height the stated context cannot "
                  f"explain, {int(per_site.get('off_lattice', 0))} off the lattice the image was read with "
                  "(another grain, amorphous material or a hole)")
    out = [f"<p>Out-of-distribution sites: <strong>{n_ood}</strong>{detail}; a context outside the model's "
           "training range flags every site.</p>"]
    grains = [int(g) for g in summary.get("grains") or []]
    if any(g > 1 for g in grains):
        out.append(f"<p>Grains: {', '.join(map(str, grains))} (per frame); the sites of each were placed on "
                   "its own lattice.</p>")
    if reasons:
        out.append('<p class="warn"><strong>Context outside the model\'s training range:</strong> '
                   f"{_e(', '.join(map(str, reasons)))}. Every site is flagged out of distribution; treat "
                   "the classes as a guess.</p>")
    return "".join(out)


def _calibration_section(calibration: Mapping[str, Any]) -> str:
    if not calibration:
        return "<h2>Calibration</h2><p>No calibration was recorded.</p>"
    measured = calibration.get("measured_lattice_constant_a")
    host_a = calibration.get("host_lattice_constant_a")
    error = calibration.get("pixel_size_error")
    given = calibration.get("pixel_size_a_given")
    out = ["<h2>Calibration</h2>"]
    if measured is not None and host_a is not None:
        out.append(f"<p>Lattice constant measured on the image: <strong>{float(measured):.4g} Å</strong>; "
                   f"the host's: {float(host_a):.4g} Å. Pixel-size error: <strong>{_pct(error)}</strong> "
                   f"at pixel_size_a = {_e(given)} Å.</p>")
    if calibration.get("pixel_size_reported"):
        out.append(f'<p class="warn"><strong>Warning: the pixel size looks wrong.</strong> With the given '
                   f"{_e(given)} Å per pixel the lattice comes out {_pct(error)} off the host's lattice "
                   "constant. Check the pixel size and the host, or rerun with --calibrate-from-lattice; "
                   "classes and densities below assume the given pixel size.</p>")
    if calibration.get("calibrated_from_lattice"):
        used = calibration.get("pixel_size_a_used")
        out.append(f'<p class="note">The pixel size was calibrated from the lattice: {_e(given)} Å given, '
                   f"<strong>{_e(f'{used:.5g}' if isinstance(used, float) else used)} Å used</strong>.</p>")
    return "".join(out)


def _pct(value: Any) -> str:
    return f"{float(value):+.2%}" if isinstance(value, int | float) else "—"


def _context_section(analysis: Analysis) -> str:
    context = analysis.summary.get("context") or analysis.context.to_dict()
    rows = [[_e(k), "—" if v is None else _e(v)] for k, v in context.items()]
    return "<h2>Imaging context used</h2>" + _table(["key", "value"], rows)


def _model_section(summary: Mapping[str, Any]) -> str:
    model = summary.get("model") or {}
    rows = [["model", _e(model.get("name", "—"))],
            ["checkpoint", f"<code>{_e(model.get('path', '—'))}</code>"],
            ["training data digest", f"<code>{_e(model.get('data_digest') or '—')}</code>"],
            ["stemsight version", _e(_version())]]
    return "<h2>Model and software</h2>" + _table(["", ""], rows)


def report_html(analysis: Analysis, *, source: str, overlay: bytes) -> str:
    """One self-contained HTML page for `analysis` of the file `source` (`overlay`: the first frame's
    `overlay_png`): counts, warnings, the pictures of the first frame, the context, calibration and model."""
    if not analysis.frames:
        raise ValueError("analysis has no frames")
    frame = analysis.frames[0]
    s = analysis.summary
    pixel = float(analysis.context.pixel_size_a)
    n_frames = len(analysis.frames)
    name = source.replace("\\", "/").rsplit("/", 1)[-1] or source
    host = analysis.context.host + (f", dopant {analysis.context.dopant}" if analysis.context.dopant else "")
    frames_line = ("1 frame" if n_frames == 1 else
                   f"{n_frames} frames: the pictures show frame 1 of {n_frames}, the counts cover all frames")
    where = "" if name == source else f" · from <code>{_e(source)}</code>"
    model = (s.get("model") or {}).get("name", "—")
    ny, nx = frame.image.shape
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>stemsight analysis: {_e(name)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>Analysis of <code>{_e(name)}</code></h1>",
        f'<p class="sub">{_e(host)}{where} · {_e(frames_line)} · model {_e(model)} · stemsight '
        f"{_e(_version())}</p>",
        _warnings(s),
        _counts_section(analysis),
        "<h2>Sites on the image</h2>",
        _figure(overlay, "sites coloured by class", f"Frame 1 of {n_frames}: every site coloured by its "
                "class (host classes small and muted; dopants filled, vacancies open circles; × out of "
                "distribution)."),
        _figure(entropy_map_png(frame, pixel_size_a=pixel), "sites coloured by posterior entropy",
                "Posterior entropy of each site's class probabilities: dark and small = sure; yellow and "
                "large = the classifier hesitates."),
        _figure(intensity_png(frame, analysis.labels), "column heights against predicted heights",
                "Where the measured columns fall against the heights the imaging context predicts for "
                "each class."),
        _figure(_image_png(frame, pixel_size_a=pixel), "the image", f"The image as read ({nx} × {ny} px)."),
        _calibration_section(s.get("calibration") or {}),
        _context_section(analysis),
        _model_section(s),
        "</main></body></html>\n",
    ]
    return "\n".join(parts)


def _warnings(summary: Mapping[str, Any]) -> str:
    """Top-of-page lines for what a reader must not miss (details further down)."""
    out = []
    calibration = summary.get("calibration") or {}
    if calibration.get("pixel_size_reported"):
        out.append(f'<p class="warn"><strong>Warning:</strong> the pixel size looks wrong '
                   f"({_pct(calibration.get('pixel_size_error'))} against the host's lattice constant); "
                   "see Calibration.</p>")
    if summary.get("ood_context"):
        out.append('<p class="warn"><strong>Warning:</strong> the imaging context is outside the model\'s '
                   f"training range ({_e(', '.join(map(str, summary['ood_context'])))}).</p>")
    for warning in summary.get("warnings") or []:
        out.append(f'<p class="warn"><strong>Warning:</strong> {_e(warning)}.</p>')
    return "".join(out)


def _version() -> str:
    from stemsight import __version__

    return __version__
