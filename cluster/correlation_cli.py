"""``genint analyse correlation CONFIG``: the correlation analysis (cluster/correlation.py) of a
job's streams, as its ``correlation:`` section says; a table on the console and a JSON file."""

import argparse
from collections.abc import Callable

from cluster.progress import console


def _analyse_correlation(args: argparse.Namespace) -> int:
    from cluster.config import load_config
    from cluster.correlation import (
        correlation_analysis,
        correlation_output,
        correlation_table,
        job_correlation_config,
        write_correlation,
    )
    from cluster.errors import ConfigError
    from cluster.run_dirs import check_output_dir

    job = load_config(args.config, args.overrides)
    destination = correlation_output(job)
    # Checked before the regressor trains, so a bad destination costs nothing.
    if destination.is_dir():
        raise ConfigError(f"correlation.output {destination}: is a directory; name the JSON file to write")
    check_output_dir(destination.parent, "correlation.output's directory")
    result = correlation_analysis(job.store_dir, job_correlation_config(job))
    console.print(correlation_table(result))
    write_correlation(result, destination)
    console.print(f"correlation: results -> {destination}")
    return 0


def add_analyse_commands(commands: argparse._SubParsersAction,
                         add_config_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``analyse`` and its actions to ``genint``'s subparsers (their handlers are ANALYSE_HANDLERS)."""
    analyse = commands.add_parser("analyse", help="analyses of a job's streams").add_subparsers(dest="action", required=True)
    add_config_arguments(analyse.add_parser(
        "correlation", help="how well the nuisances a generator intervenes on predict the label, per stream "
        "(multiple of chance; the paper's Fig. 3); settings in the config's correlation: section"))


ANALYSE_HANDLERS = {("analyse", "correlation"): _analyse_correlation}
