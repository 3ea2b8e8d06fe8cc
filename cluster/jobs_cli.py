"""``genint submit | status | logs | stop | list | scale``: the CLI side of cluster/jobs.py and,
for ``scale``, of the running job's controller (cluster/controller_client.py).

A cluster has two addresses, and each flag names one. The job commands talk to the Ray Jobs API on
the dashboard: ``--dashboard http://HOST:8265``, default ``RAY_ADDRESS`` (as Ray's own job CLI reads
it). ``scale``, ``top``, ``datagen`` and ``train`` join the cluster itself: ``--address``, as
``ray.init(address=...)`` takes it (``HOST:6379``, ``ray://HOST:10001``, ``auto``, which reads
``RAY_ADDRESS`` as ray.init does).
"""

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from rich.table import Table

from cluster.progress import console

DASHBOARD_HELP = "the Ray dashboard's URL, http://HOST:8265 (default: RAY_ADDRESS)"
CLUSTER_ADDRESS_HELP = "a Ray cluster address, as ray.init takes it: HOST:6379, ray://HOST:10001 or auto"


def _submit(args: argparse.Namespace) -> int:
    from cluster import jobs  # ray loads only for job commands

    print(jobs.submit(args.config, args.overrides, args.dashboard, args.working_dir))
    return 0


def _status(args: argparse.Namespace) -> int:
    from cluster import jobs  # ray loads only for job commands

    info = jobs.job_info(args.job, args.dashboard)
    print(f"{args.job}: {info.status.value}" + (f" ({info.message})" if info.message else ""))
    return 0


def _logs(args: argparse.Namespace) -> int:
    from cluster import jobs  # ray loads only for job commands

    for chunk in jobs.job_logs(args.job, args.dashboard, follow=args.follow):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    return 0


def _stop(args: argparse.Namespace) -> int:
    from cluster import jobs  # ray loads only for job commands

    stopped = jobs.stop(args.job, args.dashboard)
    print(f"{args.job}: stop requested" if stopped else f"{args.job}: already ended")
    return 0


def _scale(args: argparse.Namespace) -> int:
    from cluster.controller_client import scale_job  # ray loads only for job commands

    for line in scale_job(args.job, args.address, datagen=args.datagen, trainers=args.trainers):
        print(line)
    return 0


def _not_the_dashboard(text: str) -> str:
    """``--address`` on a job command: it names the cluster, not the dashboard these commands talk to."""
    raise argparse.ArgumentTypeError("this command takes the Ray dashboard's URL as --dashboard http://HOST:8265; "
                                     "--address is the Ray cluster's address, for scale, top, datagen and train")


def _add_dashboard_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dashboard", metavar="URL", help=DASHBOARD_HELP)
    parser.add_argument("--address", type=_not_the_dashboard, help=argparse.SUPPRESS)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 (got {text})")
    return int(text)


def _time(milliseconds: int | None) -> str:
    return datetime.fromtimestamp(milliseconds / 1000).strftime("%Y-%m-%d %H:%M:%S") if milliseconds else "-"


def _list(args: argparse.Namespace) -> int:
    from cluster import jobs  # ray loads only for job commands

    table = Table(title=f"jobs on {jobs.resolve_address(args.dashboard)}")
    for column in ("job", "status", "started", "ended", "entrypoint"):
        table.add_column(column)
    for job in jobs.list_jobs(args.dashboard):
        table.add_row(job.submission_id or job.job_id or "-", job.status.value, _time(job.start_time),
                      _time(job.end_time), job.entrypoint)
    console.print(table)
    return 0


def add_jobs_commands(commands: argparse._SubParsersAction,
                      add_config_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the job commands to ``genint``'s subparsers (their handlers are JOB_HANDLERS)."""
    submit = commands.add_parser("submit", help="submit a job to a Ray cluster (Ray Jobs); prints its id")
    add_config_arguments(submit)
    _add_dashboard_argument(submit)
    submit.add_argument("--working-dir", type=Path, help="development: ship this source directory as the job's "
                        "working directory (the config must lie inside it)")
    for name, text in (("status", "a submitted job's status"), ("stop", "stop a submitted job"),
                       ("logs", "a submitted job's output")):
        parser = commands.add_parser(name, help=text)
        parser.add_argument("job", help="the job id that submit printed")
        _add_dashboard_argument(parser)
        if name == "logs":
            parser.add_argument("--follow", action="store_true", help="keep printing until the job ends")
    _add_dashboard_argument(commands.add_parser("list", help="the jobs on a Ray cluster"))
    scale = commands.add_parser("scale", help="resize a running job's datagen actors or trainer workers")
    scale.add_argument("job", help="the job's name (name: in its config)")
    scale.add_argument("--datagen", type=_positive, metavar="N", help="datagen actors (training goes on)")
    scale.add_argument("--trainers", type=_positive, metavar="N",
                       help="trainer workers (training checkpoints and restarts with N from there)")
    scale.add_argument("--address", help=f"{CLUSTER_ADDRESS_HELP}; the cluster running JOB (default: auto)")


JOB_HANDLERS = {("submit", None): _submit, ("status", None): _status, ("logs", None): _logs,
                ("stop", None): _stop, ("list", None): _list, ("scale", None): _scale}
