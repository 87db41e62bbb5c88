"""Crashed-run detection: flow runs whose process is gone are marked ``Crashed``, never left RUNNING.

A flow run whose process is killed (SIGKILL, OOM killer, a lost machine) cannot report its own
end, so Prefect shows it RUNNING forever. Two signals tell such a run from a live one:

- **Its process.** Every factorflow flow run records the host, pid and process start time that
  run it (labels ``factorflow.host``/``.pid``/``.pid_start``, :mod:`factorflow.flows.monitoring`).
  On that host, a run whose process no longer exists (or whose pid now belongs to a later
  process) is dead, and one whose process runs is alive, whatever its heartbeats say.
- **Its heartbeats**, for the runs of other hosts or without the labels. Prefect's flow engine
  emits a ``prefect.flow-run.heartbeat`` event every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``
  seconds (default 180, at least 30) from every flow run, called directly (the CLI) or by a
  runner (``factorflow serve``, a worker). Such a run is dead when neither a heartbeat nor its
  entering its state (RUNNING, or PENDING: a runner took it but its process never started) is
  more recent than ``stale_after`` seconds (default: three heartbeat periods). A late run
  waiting in SCHEDULED is never judged: it has not started.

:func:`reap` applies both to the RUNNING and PENDING flow runs of the API it talks to and sets
each dead one ``Crashed`` (forced; its RUNNING task runs too) with a message saying why.
It runs automatically: every factorflow flow run starts by reaping the dead runs of its own host
(process rule only: certain, one query), and ``factorflow serve`` reaps with both rules every
minute. ``factorflow runs reap`` runs it by hand. :func:`install_zombie_automation` adds
Prefect's own answer, a server-side automation with a proactive trigger that crashes a run whose
heartbeats stop, so runs are reaped even when no factorflow process is left running.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from factorflow.flows.monitoring import FLOW_TAG, HOST_LABEL, PID_LABEL, PID_START_LABEL, process_start_ticks
from factorflow.storage.fs import host_name, pid_alive

HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
AUTOMATION_NAME = "factorflow: crash flow runs whose heartbeats stopped"
REAPER = "factorflow reaper"


@dataclass(frozen=True)
class Reaped:
    """A flow run :func:`reap` found dead (and marked Crashed unless it was a dry run)."""

    id: str
    name: str
    message: str


def heartbeat_frequency() -> int:
    """Seconds between a flow run's heartbeats (Prefect's setting; at least 30)."""
    from prefect.settings import get_current_settings

    return max(int(get_current_settings().flows.heartbeat_frequency or 180), 30)


def default_stale_after() -> float:
    """Three heartbeat periods: a run silent for longer is dead."""
    return 3.0 * heartbeat_frequency()


def process_gone(labels: dict[str, Any], this_host: str | None = None) -> str | None:
    """Why the process ``labels`` names is dead, when it ran on this host and is; else None
    (another host, no labels, or alive)."""
    this_host = this_host or host_name()
    host, pid = labels.get(HOST_LABEL), labels.get(PID_LABEL)
    if host != this_host or not str(pid or "").isdigit():
        return None
    pid = int(pid)
    if not pid_alive(pid):
        return f"its process {pid} on {host} is gone (killed or crashed)"
    recorded, now = labels.get(PID_START_LABEL), process_start_ticks(pid)
    if now is None and os.path.exists(f"/proc/{pid}"):
        return f"its process {pid} on {host} is gone (a zombie)"
    if recorded is not None and now is not None and str(now) != str(recorded):
        return f"its process {pid} on {host} is gone (the pid now belongs to another process)"
    return None


def _ours(labels: dict[str, Any], this_host: str) -> bool:
    """Whether ``labels`` name a process of this host (then its liveness, not heartbeats, decides)."""
    return labels.get(HOST_LABEL) == this_host and str(labels.get(PID_LABEL) or "").isdigit()


def silent_for(last_sign: datetime | None, now: datetime, stale_after: float) -> str | None:
    """Why a run whose latest sign of life (heartbeat, else start) was ``last_sign`` is dead, or None."""
    if last_sign is None:
        return None
    quiet = (now - last_sign).total_seconds()
    if quiet <= stale_after:
        return None
    return (f"no heartbeat for {quiet:.0f} s (since {last_sign.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z; "
            f"the limit is {stale_after:.0f} s)")


def reap(stale_after: float | None = None, *, heartbeats: bool = True, only_factorflow: bool = True,
         dry_run: bool = False, client: Any = None) -> list[Reaped]:
    """Mark the dead RUNNING/PENDING flow runs Crashed (module docstring); return them.

    ``heartbeats=False`` applies the process rule only (runs of this host). ``only_factorflow``
    limits it to runs tagged ``factorflow``. ``dry_run`` reports without changing anything.
    """
    from prefect.client.orchestration import get_client

    if client is None:
        with get_client(sync_client=True) as c:
            return reap(stale_after, heartbeats=heartbeats, only_factorflow=only_factorflow, dry_run=dry_run,
                        client=c)
    stale_after = default_stale_after() if stale_after is None else stale_after
    now = datetime.now(UTC)
    me = host_name()
    out = []
    for run in _live_runs(client, only_factorflow):
        labels = dict(run.labels or {})
        why = process_gone(labels, me)
        if why is None and heartbeats and not _ours(labels, me):  # a live process of this host is alive
            entered = run.state.timestamp if run.state else None  # when it became RUNNING (or PENDING)
            beat = _last_heartbeat(client, run.id, entered)
            signs = [t for t in (beat, entered) if t is not None]
            why = silent_for(max(signs) if signs else None, now, stale_after)
        if why is None:
            continue
        message = f"{REAPER}: {why}; marked Crashed"
        if not dry_run:
            _crash(client, run.id, message)
        out.append(Reaped(str(run.id), run.name, message))
    return out


def reap_dead_local_runs() -> list[Reaped]:
    """The process rule only, on this host's runs: what every flow run does when it starts."""
    return reap(heartbeats=False)


def _live_runs(client: Any, only_factorflow: bool) -> list[Any]:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    flt = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(
        any_=[StateType.RUNNING, StateType.PENDING])))
    if only_factorflow:
        flt.tags = FlowRunFilterTags(all_=[FLOW_TAG])
    runs: list[Any] = []
    while True:
        page = client.read_flow_runs(flow_run_filter=flt, limit=200, offset=len(runs))
        runs += page
        if len(page) < 200:
            return runs


def _last_heartbeat(client: Any, flow_run_id: Any, since: datetime | None) -> datetime | None:
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    occurred = EventOccurredFilter(since=since - timedelta(minutes=1)) if since else EventOccurredFilter()
    page = client.read_events(EventFilter(occurred=occurred, event=EventNameFilter(name=[HEARTBEAT_EVENT]),
                                          resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"])),
                              limit=1)
    return page.events[0].occurred if page.events else None


def _crash(client: Any, flow_run_id: Any, message: str) -> None:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    client.set_flow_run_state(flow_run_id, Crashed(message=message), force=True)
    tasks = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(
            any_=[StateType.RUNNING, StateType.PENDING]))))
    for task_run in tasks:
        client.set_task_run_state(task_run.id, Crashed(message=f"{REAPER}: its flow run crashed"), force=True)


def install_zombie_automation(stale_after: float | None = None, client: Any = None) -> str:
    """Create (or replace) the server-side automation that crashes a flow run whose heartbeats
    stop for ``stale_after`` seconds (Prefect's zombie detection); return its id."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    if client is None:
        with get_client(sync_client=True) as c:
            return install_zombie_automation(stale_after, client=c)
    stale_after = default_stale_after() if stale_after is None else stale_after
    automation = AutomationCore(
        name=AUTOMATION_NAME,
        description="Prefect's zombie-flow detection, installed by factorflow: a flow run that stops sending "
                    "heartbeats is marked Crashed.",
        trigger=EventTrigger(
            after={HEARTBEAT_EVENT},
            expect={HEARTBEAT_EVENT, "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=stale_after),
        ),
        actions=[ChangeFlowRunState(
            state=StateType.CRASHED,
            message=f"{REAPER} (automation): no heartbeat for {stale_after:.0f} s; the flow run's process is gone",
        )],
    )
    for old in client.read_automations_by_name(AUTOMATION_NAME):
        client.delete_automation(old.id)
    return str(client.create_automation(automation))
