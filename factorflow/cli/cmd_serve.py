"""``factorflow serve``: scheduled retraining on one machine (``prefect.serve`` in this process).

Serves the deployments of :mod:`factorflow.flows.deployments` — ``retrain/nightly-retrain`` on
``--cron`` (default ``0 3 * * *``, UTC) or ``--every``, and the unscheduled ``backfill/backfill``
and ``compare/compare`` (run them from the UI or ``prefect deployment run``) — until SIGINT
(Ctrl-C) or SIGTERM, then exits 0 after pausing the schedules (in-flight runs are cancelled).
Each flow run runs in its own subprocess; at most ``--limit`` at a time.

It needs a Prefect server that outlives it (``$PREFECT_API_URL``; ``deploy/start-prefect-server.sh``
starts one): the schedules live on the server, whose scheduler creates the runs this process
executes. The private API other commands start for one run is not used: it has no scheduler
and would vanish with this process. Every ``--reap-every`` seconds it marks flow runs whose
process died Crashed, and at start it installs Prefect's zombie-detection automation on the
server (``--no-zombie-automation`` to skip).
"""

from __future__ import annotations

import argparse
import re

from factorflow.cli._common import add_ingest_args, add_store_arg

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_every(text: str) -> float:
    """``--every``: ``90``/``90s``, ``30m``, ``12h``, ``1d``, ``1w`` → seconds (ParameterError otherwise)."""
    from factorflow.errors import ParameterError

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    seconds = float(m[1]) * _UNITS[m[2] or "s"] if m else 0.0
    if not seconds > 0:
        raise ParameterError(f"--every={text!r}: must be a duration > 0 such as 30 (seconds), 90s, 30m, 12h, 1d, 1w")
    return seconds


def add_parser(sub: argparse._SubParsersAction) -> None:
    from factorflow.cli.cmd_retrain import add_compute_args, add_model_args, add_publish_args, add_split_args

    p = sub.add_parser("serve", help="serve the nightly-retrain schedule (and on-demand backfill/compare) with "
                                     "prefect.serve; needs PREFECT_API_URL",
                       description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, help="ratings file each scheduled run ingests (path or fsspec URL)")
    add_store_arg(p)
    p.add_argument("--dataset", help="dataset name in the store (default: the source file's stem)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--cron", help="the retrain schedule, cron syntax in UTC (default '0 3 * * *': 03:00 every day)")
    when.add_argument("--every", metavar="DURATION", help="retrain every DURATION instead: 30 (s), 90s, 30m, 12h, 1d")
    p.add_argument("--limit", type=int, default=1, help="flow runs at the same time (default 1)")
    p.add_argument("--reap-every", type=float, default=60.0, metavar="S",
                   help="mark dead flow runs Crashed every S seconds (default 60; 0: never)")
    p.add_argument("--stale-after", type=float, metavar="S",
                   help="a run silent (no heartbeat) for S seconds is dead (default: three heartbeat periods)")
    p.add_argument("--no-zombie-automation", action="store_true",
                   help="do not install Prefect's zombie-detection automation on the server")
    p.add_argument("--name", help="published model name (default: the model kind)")
    add_model_args(p)
    add_split_args(p)
    add_compute_args(p)
    p.add_argument("--top-n", type=int, default=10, help="N for top-N metrics and batch recommendations")
    p.add_argument("--titles", help="a movies.csv (movieId,title,...) whose titles are published with the items")
    add_publish_args(p)
    add_ingest_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import signal
    import sys

    import prefect.settings as ps

    from factorflow.cli._common import ensure_writable_store, quiet_user_error_tracebacks
    from factorflow.cli.cmd_retrain import check_sources_exist, model_config_from_args, params_from_args
    from factorflow.errors import ParameterError

    if args.limit < 1:
        raise ParameterError(f"--limit={args.limit}: must be at least 1")
    if args.reap_every < 0:
        raise ParameterError(f"--reap-every={args.reap_every}: must be >= 0 seconds")
    interval = parse_every(args.every) if args.every else None
    if args.cron is not None:
        _check_cron(args.cron)
    config = model_config_from_args(args)
    params = params_from_args(args, args.dataset)
    url = ps.PREFECT_API_URL.value()
    if not url:
        raise ParameterError("factorflow serve needs a Prefect server that outlives it: start one with "
                             "deploy/start-prefect-server.sh (or `prefect server start`) and export "
                             "PREFECT_API_URL=http://127.0.0.1:4200/api")
    from factorflow.cli._prefect_api import _check_reachable

    _check_reachable(url)
    check_sources_exist(args.source, args.titles)
    ensure_writable_store(args.store)
    # until prefect.serve installs its own handler, SIGTERM ends this process as cleanly as SIGINT
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    quiet_user_error_tracebacks()

    from factorflow.flows import deployments as d
    from factorflow.flows.reaper import install_zombie_automation

    if not args.no_zombie_automation:
        install_zombie_automation(args.stale_after)
    source, store = _absolute(args.source), _absolute(args.store)  # the runs may start elsewhere
    if params.item_titles:
        params = params.model_copy(update={"item_titles": _absolute(params.item_titles)})
    built = d.build_deployments(source, store, config, args.name, params, cron=args.cron or d.NIGHTLY_CRON,
                                interval=interval)
    when = f"every {interval:g} s" if interval else f"cron {args.cron or d.NIGHTLY_CRON!r} (UTC)"
    ui = url.rstrip("/").removesuffix("/api")
    print(f"factorflow: serving retrain/{d.NIGHTLY} ({when}), backfill/{d.BACKFILL} and compare/{d.COMPARE} "
          f"(on demand) against {url}; at most {args.limit} run(s) at a time", file=sys.stderr)
    print(f"factorflow: watch at {ui}/runs; run a backfill with: prefect deployment run 'backfill/{d.BACKFILL}' "
          "-p start=2015-01-01 -p end=2017-01-01 -p every=365d; stop with Ctrl-C or SIGTERM", file=sys.stderr,
          flush=True)
    d.serve(built, limit=args.limit, reap_every=args.reap_every or None, stale_after=args.stale_after)
    print("factorflow: serve stopped (schedules paused)", file=sys.stderr)
    return 0


def _absolute(path: str) -> str:
    """A local path made absolute; a URL (``s3://...``) as given."""
    import os

    return path if "://" in path or "::" in path else os.path.abspath(path)


def _check_cron(text: str) -> None:
    from factorflow.errors import ParameterError

    try:
        from croniter import croniter

        ok = croniter.is_valid(text)
    except ImportError:  # Prefect validates it when the deployment is built
        ok = True
    if not ok:
        raise ParameterError(f"--cron={text!r}: not a cron expression (e.g. '0 3 * * *': 03:00 UTC every day)")
