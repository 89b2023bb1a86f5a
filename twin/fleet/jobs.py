"""One plant's training as a job that any process can run: in the driver, or as a Ray task.

A job runs the `twin train` command itself (in-process, the same argv a person would type), so
a fleet-trained version is trained, evaluated, carded and registered by exactly the code of
`twin train`: first version active, later ones awaiting promotion. The job never raises: a
failed plant comes back as a result with its error, and the other plants go on.
"""

from __future__ import annotations

import contextlib
import io
import os
import resource
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class TrainOptions:
    """The `twin train` options a fleet run passes through to every plant."""

    device: str = "cpu"
    """cpu or cuda (a Ray task on a GPU node asks for --gpus-per-twin of a GPU)."""
    epochs: int | None = None
    """Most epochs (None: twin train's default)."""
    max_seconds: float | None = None
    """Wall-clock safety net of each fit (None: twin train's default)."""
    quick: bool = False
    """Tiny model and a few seconds of training (smoke tests and demos)."""

    def argv(self) -> list[str]:
        args = ["--device", self.device]
        if self.epochs is not None:
            args += ["--epochs", str(self.epochs)]
        if self.max_seconds is not None:
            args += ["--max-seconds", f"{self.max_seconds:g}"]
        if self.quick:
            args.append("--quick")
        return args


@dataclass(frozen=True)
class TwinJob:
    """Train one plant's twin with one seed into one home."""

    plant: str
    """A built-in plant's name or a path to a plant.toml (as `twin train` takes it)."""
    seed: int
    home: str
    """Absolute path of the twin home; on a multi-node cluster a folder every node mounts."""
    options: TrainOptions = field(default_factory=TrainOptions)

    @property
    def label(self) -> str:
        return f"{Path(self.plant).parent.name if self.plant.endswith('.toml') else self.plant}/seed {self.seed}"

    def argv(self) -> list[str]:
        return [
            "train",
            self.plant,
            "--seed",
            str(self.seed),
            "--home",
            self.home,
            *self.options.argv(),
        ]


@dataclass
class JobResult:
    """What one job produced: a registered version and its held-out figures, or an error."""

    plant: str
    seed: int
    version: str | None = None
    active: bool = False
    error: str | None = None
    seconds: float = 0.0
    """Wall-clock seconds of the whole job (data read, fits, evaluation, save)."""
    cpu_seconds: float = 0.0
    """CPU seconds the job used (user + system): the cost a sizing multiplies."""
    max_rss_mb: float = 0.0
    """Peak resident memory of the process that ran the job."""
    host: str = ""
    nrmse: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """Held-out NRMSE per model and horizon, as in the model card."""

    @property
    def ok(self) -> bool:
        return self.error is None


def run_job(job: TwinJob) -> JobResult:
    """Run `twin train` for one plant and read back what it registered; never raises."""
    from twin import registry
    from twin.cli import main
    from twin.spec import load_spec

    res = JobResult(plant=job.plant, seed=job.seed, host=socket.gethostname())
    t0, c0 = time.perf_counter(), _cpu_seconds()
    out, err = io.StringIO(), io.StringIO()
    os.environ.setdefault("TQDM_DISABLE", "1")  # a worker's bars would interleave in the log
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(job.argv())
        lines = out.getvalue().split()
        if code != 0 or not lines:
            res.error = _error_text(err.getvalue()) or f"twin train exited with code {code}"
        else:
            spec = load_spec(job.plant)
            res.plant = spec.name
            res.version = lines[-1]
            card = registry.load_checkpoint(job.home, spec, res.version)["card"]
            res.active = registry.active_version(job.home, spec) == res.version
            res.nrmse = {m: r["nrmse"] for m, r in card["evaluation"]["models"].items()}
    except Exception as exc:  # a job reports, it never takes the fleet down
        res.error = f"{type(exc).__name__}: {exc}"
    res.seconds = time.perf_counter() - t0
    res.cpu_seconds = _cpu_seconds() - c0
    res.max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return res


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _error_text(stderr: str) -> str:
    """The error line `twin train` printed (its message names the plant, file or field)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(("error:", "failed:")):
            return ln
    return lines[-1] if lines else ""
