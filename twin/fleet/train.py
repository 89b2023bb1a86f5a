"""`twin fleet train`: one Ray task per (plant, seed), results as they finish.

fleet = plan_jobs(plants, seeds, home, options)
results = train_on_ray(ray, fleet, gpus_per_twin)   # or train_sequentially(fleet): the baseline
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from types import ModuleType

from tqdm.auto import tqdm

from twin.errors import BadInput
from twin.fleet.jobs import JobResult, TrainOptions, TwinJob, run_job
from twin.paths import Home

log = logging.getLogger(__name__)

OnResult = Callable[[JobResult], None]


def plan_jobs(
    plants: Sequence[str], seeds: Sequence[int], home: Home, options: TrainOptions
) -> list[TwinJob]:
    """One job per plant and seed, plants in the order given, duplicates refused."""
    if not plants:
        raise BadInput("give one or more plants, or --all")
    if not seeds:
        raise BadInput("--seeds: give at least one seed")
    dupes = sorted({p for p in plants if list(plants).count(p) > 1})
    if dupes:
        raise BadInput(f"plants given twice: {', '.join(dupes)}")
    if len(set(seeds)) != len(seeds):
        raise BadInput(f"--seeds: a seed given twice in {list(seeds)}")
    return [TwinJob(p, s, str(home.root), options) for p in plants for s in seeds]


def train_sequentially(
    jobs: Sequence[TwinJob], on_result: OnResult | None = None, progress: bool = True
) -> list[JobResult]:
    """The jobs one after another in this process (the benchmark's baseline)."""
    results = []
    for job in tqdm(jobs, desc="twins", unit="twin", disable=not progress):
        res = run_job(job)
        results.append(res)
        if on_result:
            on_result(res)
    return results


def train_on_ray(
    ray: ModuleType,
    jobs: Sequence[TwinJob],
    gpus_per_twin: float = 0.0,
    on_result: OnResult | None = None,
    progress: bool = True,
) -> list[JobResult]:
    """The jobs as Ray tasks (one CPU each, plus gpus_per_twin); results in job order.

    A task that dies (a worker killed, a node lost) comes back as that plant's error; the
    others go on. `on_result` sees each result as soon as it is in.
    """
    if gpus_per_twin < 0:
        raise BadInput(f"--gpus-per-twin must be 0 or more, not {gpus_per_twin}")
    remote = ray.remote(run_job).options(
        num_cpus=1, num_gpus=gpus_per_twin, max_retries=0, name="twin-train"
    )
    pending = {remote.remote(job): i for i, job in enumerate(jobs)}
    results: list[JobResult | None] = [None] * len(jobs)
    with tqdm(total=len(jobs), desc="twins", unit="twin", disable=not progress) as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(done[0])
            try:
                res = ray.get(done[0])
            except Exception as exc:  # the task itself died: report it against its plant
                res = JobResult(plant=jobs[i].plant, seed=jobs[i].seed, error=_task_error(exc))
            results[i] = res
            bar.update(1)
            bar.set_postfix_str(f"{res.plant}/seed {res.seed}: {res.version or 'failed'}")
            if on_result:
                on_result(res)
    return [r for r in results if r is not None]


def _task_error(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"Ray task failed: {type(exc).__name__}: {text[-1] if text else ''}"
