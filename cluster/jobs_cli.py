"""``genint submit | status | logs | stop | list | scale``: the CLI side of cluster/jobs.py and,
for ``scale``, of the running job's controller (cluster/controller.py)."""

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from rich.table import Table

from cluster.progress import console

ADDRESS_HELP = "the cluster's dashboard, e.g. http://HOST:8265 (default: RAY_ADDRESS)"
RAY_ADDRESS_HELP = "the Ray cluster the job runs on: HOST:6379, ray://HOST:10001 or auto (default: auto)"


def _submit(args: argparse.Namespace) -> int:
    from cluster import jobs  # ray loads only for job commands

    print(jobs.submit(args.config, args.overrides, args.address, args.working_dir))
    return 0


def _status(args: argparse.Namespace) -> int:
    from cluster import jobs  # ray loads only for job commands

    info = jobs.job_info(args.job, args.address)
    print(f"{args.job}: {info.status.value}" + (f" ({info.message})" if info.message else ""))
    return 0


def _logs(args: argparse.Namespace) -> int:
    from cluster import jobs  # ray loads only for job commands

    for chunk in jobs.job_logs(args.job, args.address, follow=args.follow):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    return 0


def _stop(args: argparse.Namespace) -> int:
    from cluster import jobs  # ray loads only for job commands

    stopped = jobs.stop(args.job, args.address)
    print(f"{args.job}: stop requested" if stopped else f"{args.job}: already ended")
    return 0


def _scale(args: argparse.Namespace) -> int:
    from cluster.controller import scale_job  # ray loads only for job commands

    for line in scale_job(args.job, args.address, datagen=args.datagen, trainers=args.trainers):
        print(line)
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 (got {text})")
    return int(text)


def _time(milliseconds: int | None) -> str:
    return datetime.fromtimestamp(milliseconds / 1000).strftime("%Y-%m-%d %H:%M:%S") if milliseconds else "-"


def _list(args: argparse.Namespace) -> int:
    from cluster import jobs  # ray loads only for job commands

    table = Table(title=f"jobs on {jobs.resolve_address(args.address)}")
    for column in ("job", "status", "started", "ended", "entrypoint"):
        table.add_column(column)
    for job in jobs.list_jobs(args.address):
        table.add_row(job.submission_id or job.job_id or "-", job.status.value, _time(job.start_time),
                      _time(job.end_time), job.entrypoint)
    console.print(table)
    return 0


def add_jobs_commands(commands: argparse._SubParsersAction,
                      add_config_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the job commands to ``genint``'s subparsers (their handlers are JOB_HANDLERS)."""
    submit = commands.add_parser("submit", help="submit a job to a Ray cluster (Ray Jobs); prints its id")
    add_config_arguments(submit)
    submit.add_argument("--address", help=ADDRESS_HELP)
    submit.add_argument("--working-dir", type=Path, help="development: ship this source directory as the job's "
                        "working directory (the config must lie inside it)")
    for name, text in (("status", "a submitted job's status"), ("stop", "stop a submitted job"),
                       ("logs", "a submitted job's output")):
        parser = commands.add_parser(name, help=text)
        parser.add_argument("job", help="the job id that submit printed")
        parser.add_argument("--address", help=ADDRESS_HELP)
        if name == "logs":
            parser.add_argument("--follow", action="store_true", help="keep printing until the job ends")
    commands.add_parser("list", help="the jobs on a Ray cluster").add_argument("--address", help=ADDRESS_HELP)
    scale = commands.add_parser("scale", help="resize a running job's datagen actors or trainer workers")
    scale.add_argument("job", help="the job's name (name: in its config)")
    scale.add_argument("--datagen", type=_positive, metavar="N", help="datagen actors (training goes on)")
    scale.add_argument("--trainers", type=_positive, metavar="N",
                       help="trainer workers (training checkpoints and restarts with N from there)")
    scale.add_argument("--address", help=RAY_ADDRESS_HELP)


JOB_HANDLERS = {("submit", None): _submit, ("status", None): _status, ("logs", None): _logs,
                ("stop", None): _stop, ("list", None): _list, ("scale", None): _scale}
