"""Retraining on drift, on the runtime's own schedule (`twin serve --retrain-on-drift`).

When the drift test fires (twin.health.monitor), the runtime starts `twin retrain PLANT --since
<onset>` as a separate process at low CPU priority, so that training never delays a control
interval, and once it has registered the new version puts it in shadow beside the active twin
(twin.serve.shadow). Promotion stays gated and in a person's hands (`twin models promote
--gated`): the runtime retrains and evaluates, it never swaps the twin controlling the plant.
Each recommendation is answered once; a failed retrain raises a runtime_error alarm with the
command's own message and leaves control as it was.

Closed-loop history identifies poorly: a controller holds its MVs still. When the retrain reports
MVs that barely moved in its window, the runtime also requests a small step test on them (a
staircase around their live values, inside the operator limits: twin.steptest) and raises
`step_test_requested`. It runs only once an engineer approves it, every move guarded like any
other; when it is done the runtime retrains over the same window, now holding the steps, and
puts that version in shadow. While the request waits, further drift recommendations are not
answered (the engineer approves or aborts it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from twin.errors import BadInput
from twin.paths import Home
from twin.serve.alarms import Alarms
from twin.serve.config import ACTOR
from twin.serve.shadow import Shadow
from twin.spec import PlantSpec
from twin.state import NotFound, Store

log = logging.getLogger(__name__)

RetrainMode = Literal["off", "full", "quick"]
NICE = 10
"""CPU priority the training process drops to: the control loop shares the machine."""


@dataclass(frozen=True)
class AwaitedStepTest:
    """A step test the retrainer requested, and the recommendation a retrain over it answers."""

    campaign_id: int
    recommendation: dict[str, Any]


class Retrainer:
    """Answers the drift monitor's recommendations with a retrain and a shadow run."""

    def __init__(
        self,
        home: Home,
        spec: PlantSpec,
        store: Store,
        alarms: Alarms,
        shadow: Shadow,
        mode: RetrainMode,
    ) -> None:
        self.home, self.spec, self.store, self.alarms, self.shadow = (
            home,
            spec,
            store,
            alarms,
            shadow,
        )
        self.mode = mode
        self.task: asyncio.Task[str | None] | None = None
        """The retrain under way (its result: the new version, or None when it failed)."""
        self._answered: set[tuple[Any, Any]] = set()
        self.awaited: AwaitedStepTest | None = None
        """The step test this retrainer requested and waits for, before retraining over it."""
        self._proc: asyncio.subprocess.Process | None = None
        self._closing = False

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    def step(self, recommendation: Mapping[str, Any] | None) -> None:
        """Once per control interval: retrain over a step test that has ended, or start a
        retrain for a recommendation not yet answered."""
        if self.mode == "off" or self.busy:
            return
        key = None
        if recommendation is not None:
            key = (recommendation.get("model_version"), recommendation.get("data_ts"))
        if self.awaited is not None:
            if key is not None:  # the retrain over the step test answers it
                self._answered.add(key)
            self._follow_step_test(self.awaited)
            return
        if recommendation is None or key is None or key in self._answered:
            return
        self._answered.add(key)
        self.task = asyncio.create_task(self._retrain(dict(recommendation)))

    def command(self, since: str) -> list[str]:
        """The `twin retrain` command line for a window starting at `since`."""
        plant = str(self.spec.path) if self.spec.path is not None else self.spec.name
        args = [sys.executable, "-m", "twin.cli", "retrain", plant, "--since", since]
        args += ["--json", "--home", str(self.home.root)]
        return args + (["--quick"] if self.mode == "quick" else [])

    def _follow_step_test(self, awaited: AwaitedStepTest) -> None:
        try:
            status = self.store.get_steptest(awaited.campaign_id).status
        except NotFound:  # gone from the store: nothing left to wait for
            status = "gone"
        if status in ("requested", "approved", "running"):
            return
        self.awaited = None
        if status != "done":  # aborted or failed: its own audit event says why
            log.warning(
                "%s: step test %d ended %s; no retrain over it",
                self.spec.name,
                awaited.campaign_id,
                status,
            )
            return
        self.task = asyncio.create_task(
            self._retrain(awaited.recommendation, after_step_test=awaited.campaign_id)
        )

    async def _retrain(
        self, recommendation: dict[str, Any], after_step_test: int | None = None
    ) -> str | None:
        since = str(recommendation.get("onset_ts") or recommendation.get("data_ts"))
        args = self.command(since)
        log.warning("drift: retraining %s on its live history since %s", self.spec.name, since)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "COLUMNS": "1000"},  # its error message on one line
            )
            # Not preexec_fn: the runtime plans on threads, and a fork running Python code
            # before exec may deadlock on a lock another thread held. Lowered at once instead.
            with contextlib.suppress(ProcessLookupError):
                os.setpriority(os.PRIO_PROCESS, self._proc.pid, NICE)
            out, err = await self._proc.communicate()
            code = self._proc.returncode
        except OSError as exc:
            self._failed(since, f"cannot start it: {exc}")
            return None
        finally:
            self._proc = None
        if code != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            self._failed(since, f"exit {code}: {lines[-1] if lines else 'no message'}")
            return None
        try:
            result = json.loads(out)
            version = str(result["version"])
        except (ValueError, KeyError, TypeError):
            self._failed(since, "its output named no version")
            return None
        previous = self.shadow.version
        self.shadow.follow(version)
        why = (
            f"retrained on the live history since {since} after the drift alarm; {version} now "
            "plans in shadow and waits for gated promotion"
        )
        if after_step_test is not None:
            why += f"; its window holds step test {after_step_test}"
        if previous is not None and previous != version:
            why += f" (it replaces {previous} in shadow)"
        log.warning("%s: %s", self.spec.name, why)
        self.store.log_event(
            user=ACTOR,
            kind="retrain_shadowed",
            plant=self.spec.name,
            subject=f"model:{version}",
            what={
                "version": version,
                "since": since,
                "answers": {
                    "model_version": recommendation.get("model_version"),
                    "data_ts": recommendation.get("data_ts"),
                },
                "replaced_shadow": previous,
                "after_step_test": after_step_test,
            },
            why=why,
        )
        design = result.get("step_test_design") if isinstance(result, dict) else None
        if design and after_step_test is None:
            self._request_step_test(design, str(result.get("step_test")), version, recommendation)
        elif design:
            log.warning(
                "%s: %s (not requested again after step test %d)",
                self.spec.name,
                result.get("step_test"),
                after_step_test,
            )
        return version

    def _request_step_test(
        self,
        design: dict[str, Any],
        advice: str,
        version: str,
        recommendation: dict[str, Any],
    ) -> None:
        """File the retrain's step test for an engineer's approval and wait for it."""
        from twin.api.steptests import validate_design

        try:
            moves = validate_design(self.spec, design)
        except BadInput as exc:  # the design follows the limits: a failure here is a defect
            self._failed(str(recommendation.get("onset_ts")), f"its step test is invalid: {exc}")
            return
        note = f"re-identification after the drift retrain ({version}): {advice}"
        cid = self.store.add_steptest(
            self.spec.name,
            design,
            user=ACTOR,
            note=note,
            what={
                "moves": len(moves),
                "duration_s": design.get("duration_s"),
                "mvs": design.get("mvs"),
                "retrained": version,
            },
        )
        self.awaited = AwaitedStepTest(cid, recommendation)
        self.alarms.raise_(
            "step_test_requested",
            None,
            f"step test {cid} requested on {', '.join(design.get('mvs', {}))}: {advice}. "
            "Approve it on the Twin page (or abort it); the runtime retrains over it when done",
            subject=f"steptest:{cid}",
        )

    def _failed(self, since: str, why: str) -> None:
        if self._closing:  # stopped with the runtime: nothing failed
            log.info("retraining %s stopped with the runtime", self.spec.name)
            return
        message = f"retraining {self.spec.name} on its history since {since} failed: {why}"
        log.error(message)
        self.alarms.raise_("runtime_error", None, message)
        return None

    async def close(self) -> None:
        """Stop a retrain under way (the runtime is stopping): its process ends with it."""
        self._closing = True
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
