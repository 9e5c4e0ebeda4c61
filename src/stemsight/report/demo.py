"""The demo on built-in defaults: a realistic V-doped MoS2 image at 80 kV written as a labelled bundle
with a preview. (Later stages add the analysis of that image and the report.)"""

from __future__ import annotations

from pathlib import Path

from stemsight.core.context import ImagingContext
from stemsight.datasets.simulate import SimulationRequest, simulate_labelled_image
from stemsight.report.bundle import write_bundle

DEMO_CONTEXT = ImagingContext(
    host="MoS2",
    dopant="V",
    energy_kev=80.0,
    convergence_mrad=30.0,
    detector_inner_mrad=80.0,
    detector_outer_mrad=200.0,
    pixel_size_a=0.15,
    dose_e_per_a2=1e5,
)


def run_demo(out: str | Path = "stemsight-demo", *, seed: int = 0) -> str:
    """Simulate the demo image into `out`/bundle and return a short text summary."""
    from stemsight.realism import RealismRanges

    request = SimulationRequest(DEMO_CONTEXT, size_a=60.0, realism=RealismRanges(), seed=seed)
    item = simulate_labelled_image(request)
    bundle = write_bundle(item, Path(out) / "bundle")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(item.counts().items()))
    return (
        f"simulated V-doped MoS2, 80 kV, HAADF 80–200 mrad, 1e5 e/Å²: {item.image.shape[1]}×"
        f"{item.image.shape[0]} px, sites: {counts}\nbundle: {bundle.resolve()}\n"
        f"preview: {(bundle / 'preview.png').resolve()}"
    )
