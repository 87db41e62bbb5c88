"""``factorflow runs``: find flow runs whose process died and mark them Crashed.

Forms:

    factorflow runs reap [--stale-after S] [--any-flow] [--dry-run]
    factorflow runs zombie-automation [--stale-after S]

reap checks the RUNNING and PENDING factorflow flow runs of the Prefect API ($PREFECT_API_URL;
without it, the private API over $PREFECT_HOME's database, where killed CLI runs were left): a
run whose recorded process on this host is gone, or (another host, or a run without factorflow's
labels) whose last heartbeat is older than S seconds (default three heartbeat periods), is set
Crashed with a message saying why. --any-flow includes flow runs without the factorflow tag
(e.g. runs killed before this version recorded its process). zombie-automation installs Prefect's
server-side zombie detection (a proactive automation on heartbeats) on the server at
$PREFECT_API_URL.
"""

from __future__ import annotations

import argparse
import json

ACTIONS = ("reap", "zombie-automation")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "runs", help="mark flow runs whose process died Crashed (reap); install Prefect's zombie detection",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("--stale-after", type=float, metavar="S",
                   help="seconds without a heartbeat after which a run is dead (default: three heartbeat periods, "
                        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY x 3 = 540)")
    p.add_argument("--any-flow", action="store_true", help="reap: every flow run, not only factorflow's")
    p.add_argument("--dry-run", action="store_true", help="reap: report, change nothing")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from factorflow.errors import ParameterError

    if args.stale_after is not None and not args.stale_after > 0:
        raise ParameterError(f"--stale-after={args.stale_after}: must be a number of seconds > 0")
    if args.action == "zombie-automation":
        import prefect.settings as ps

        from factorflow.cli._prefect_api import prefect_api
        from factorflow.flows.reaper import AUTOMATION_NAME, default_stale_after, install_zombie_automation

        if not ps.PREFECT_API_URL.value():
            raise ParameterError("zombie-automation needs a Prefect server: set PREFECT_API_URL "
                                 "(deploy/start-prefect-server.sh prints it)")
        with prefect_api():
            automation_id = install_zombie_automation(args.stale_after)
        print(f"installed automation {AUTOMATION_NAME!r} ({automation_id}): a flow run without a heartbeat for "
              f"{args.stale_after or default_stale_after():.0f} s is marked Crashed")
        return 0

    from factorflow.cli._prefect_api import prefect_api
    from factorflow.flows.reaper import reap

    with prefect_api():
        reaped = reap(args.stale_after, only_factorflow=not args.any_flow, dry_run=args.dry_run)
    if args.json:
        print(json.dumps([r.__dict__ for r in reaped], indent=2))
        return 0
    verb = "would mark" if args.dry_run else "marked"
    for r in reaped:
        print(f"{verb} Crashed: {r.name} ({r.id}): {r.message}")
    if not reaped:
        print("no dead flow runs")
    return 0
