"""Build a patch store from a case grid, on Dask (a LocalCluster by default, or any scheduler).

Workers run `simulate_unit` (a pure function of the config and the unit index); this process receives
each finished unit, stages it on disk at once and appends units to the store in unit order. A build that
is killed keeps every staged or appended unit; `resume=True` runs only the rest.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stemsight.core.errors import InputError
from stemsight.datasets.config import DatasetConfig
from stemsight.datasets.store import StoreWriter
from stemsight.datasets.units import simulate_unit

_FLUSH_SECONDS = 2.0  # append whatever is in order at least this often, so that progress survives a kill


@dataclass(frozen=True)
class BuildSummary:
    path: Path
    units_total: int
    units_run: int
    n_patches: int
    seconds: float


def build_dataset(
    config: DatasetConfig,
    out: str | Path,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> BuildSummary:
    """Simulate every unit of `config` into the store `out` (see the module docstring).

    workers: Dask worker processes of the LocalCluster (one thread each); 0 runs in this process without
    Dask. scheduler: address of a running Dask scheduler (its workers need stemsight installed); overrides
    `workers`. resume: continue the store at `out` (or start it when it does not exist); without it, an
    existing `out` is an error.
    """
    out = check_build_target(out, workers=workers, resume=resume)
    writer = StoreWriter.resume(out, config) if out.exists() else None
    done = writer.finished_units() if writer else set()
    todo = [u for u in range(config.n_units) if u not in done]
    use_dask = bool(todo) and (scheduler is not None or workers > 0)
    # connect (or start the cluster) before creating the store: an unreachable scheduler leaves nothing
    with _dask_client(workers, scheduler) if use_dask else contextlib.nullcontext() as client:
        created = writer is None
        writer = writer or StoreWriter.create(out, config)
        try:
            start = time.perf_counter()
            if use_dask:
                results = _run_on_client(client, config, todo)
            else:
                results = (simulate_unit(config, u) for u in todo)
            patches_new = 0
            with _progress_bar(config.n_units, len(done), enabled=progress) as bar:
                last_flush = time.perf_counter()
                for result in results:
                    writer.stage(result)
                    patches_new += len(result["label"])
                    now = time.perf_counter()
                    if writer.append_ready(force=now - last_flush > _FLUSH_SECONDS):
                        last_flush = now
                    bar.update(1)
                    bar.set_postfix_str(f"{patches_new / max(now - start, 1e-9):,.0f} patches/s",
                                        refresh=False)
                writer.finish()
        except InputError:
            # bad input found before any image was kept: leave no store behind (one with images stays,
            # to be resumed)
            if created and not writer.finished_units():
                shutil.rmtree(out, ignore_errors=True)
            raise
    seconds = time.perf_counter() - start
    return BuildSummary(out, config.n_units, len(todo), writer.n_patches, seconds)


def check_build_target(out: str | Path, *, workers: int, resume: bool) -> Path:
    """``out`` as a Path once the worker count is valid and ``out`` may be written (new, or resumed)."""
    out = Path(out)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise InputError(f"--workers: expected an integer >= 0, got {workers!r}")
    if out.exists() and not resume:
        raise InputError(f"{out}: exists (add --resume to continue it, or choose a new path)")
    return out


def submit_windowed(client, function, shared, tasks: Iterator, *, key: Callable[[object], str]) -> Iterator:
    """``function(shared, task)`` for every task on the Dask ``client``, keeping 2 tasks per worker thread
    in flight; yields each result as it finishes (``shared`` is broadcast to the workers once)."""
    from distributed import as_completed

    n_threads = max(1, sum(client.nthreads().values()))
    shared = client.scatter(shared, broadcast=True)

    def submit(task):
        return client.submit(function, shared, task, key=key(task), pure=False)

    queue = as_completed([submit(task) for task in itertools.islice(tasks, 2 * n_threads)])
    for future in queue:
        result = future.result()
        future.release()
        nxt = next(tasks, None)
        if nxt is not None:
            queue.add(submit(nxt))
        yield result


def _run_on_client(client, config: DatasetConfig, units: list[int]) -> Iterator[dict[str, np.ndarray]]:
    """Run units in tasks of consecutive images of one case (a worker then reuses the case's probe and
    column tables), keeping a bounded window of tasks in flight (2 per worker thread)."""
    n_threads = max(1, sum(client.nthreads().values()))
    digest = config.digest()[:12]
    batches = iter(task_batches(config, units, n_threads=n_threads))
    for results in submit_windowed(client, simulate_units, config, batches,
                                   key=lambda b: f"stemsight-units-{digest}-{b[0]}-{b[-1]}"):
        yield from results


def simulate_units(config: DatasetConfig, units: list[int]) -> list[dict[str, np.ndarray]]:
    """`simulate_unit` for each of `units` (one Dask task)."""
    return [simulate_unit(config, u) for u in units]


def task_batches(
    config: DatasetConfig, units: list[int], *, n_threads: int, max_size: int = 8
) -> list[list[int]]:
    """Split `units` into runs of consecutive units of one case, at most `max_size` long and short
    enough that every worker thread gets several tasks."""
    size = max(1, min(max_size, len(units) // (4 * n_threads)))
    batches: list[list[int]] = []
    for unit in units:
        last = batches[-1] if batches else None
        if (
            last is not None
            and len(last) < size
            and unit == last[-1] + 1
            and unit // config.images_per_case == last[0] // config.images_per_case
        ):
            last.append(unit)
        else:
            batches.append([unit])
    return batches


@contextlib.contextmanager
def _dask_client(workers: int, scheduler: str | None):
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise InputError(f"--scheduler: cannot reach {scheduler} ({exc})") from None
        except (ValueError, TypeError) as exc:  # distributed's parser: "missing port number in address"
            raise InputError(f"--scheduler: {scheduler!r} is not a scheduler address such as "
                             f"tcp://host:8786 ({' '.join(str(exc).split())})") from None
        try:
            yield client
        finally:
            client.close()
        return
    # One thread per worker process (numpy/scipy inside them are single-threaded by Dask's
    # pre-spawn environment), so N workers use N cores and do not oversubscribe. Dask also sets
    # MALLOC_TRIM_THRESHOLD_=65536 in its workers, which makes glibc map and unmap every large array:
    # measured here, it doubles the time of a unit (most of it in the kernel), so it is left unset.
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@contextlib.contextmanager
def _progress_bar(total: int, initial: int, *, enabled: bool, desc: str = "dataset build", unit: str = "img"):
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, disable=not enabled,
               dynamic_ncols=True, smoothing=0.1)
    try:
        yield bar
    finally:
        bar.close()
