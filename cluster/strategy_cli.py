"""``genint strategy score | search``: the causal bound log P(x|z) of a job's strategy, and the
search for the strategy with the highest bound (cluster/strategy_search.py; the job's
``strategy_search`` section says how).

The config is checked (section, grid, output directory) before torch loads; the search writes its
files only once every strategy is scored.
"""

import argparse
from collections.abc import Callable

from rich.table import Table

from cluster.config import load_config
from cluster.errors import ConfigError
from cluster.progress import console, progress_bar
from cluster.run_dirs import check_output_dir
from cluster.strategy_search_config import grid_strategies, search_settings


def _load(args: argparse.Namespace, needs_grid: bool):
    """The job and its search section, checked (for search: the grid and the output directory)
    before torch loads; config errors name the file."""
    job = load_config(args.config, args.overrides)
    try:
        search = search_settings(job)
        if needs_grid:
            grid_strategies(job.datagen.strategy, search.grid)
    except ConfigError as error:
        raise ConfigError(f"{args.config}: {error}") from None
    if needs_grid:
        check_output_dir(search.search_dir(job.local_output_dir), "strategy_search.output_dir")
    return job, search


def _score(args: argparse.Namespace) -> int:
    from cluster.strategy_search import PAPER_CHOSEN_BOUND, score_strategy

    job, search = _load(args, needs_grid=False)
    score = score_strategy(job, search=search)
    console.print(f"strategy {score.label}: log P(x|z) = {score.bound.mean:.4f} per real image "
                  f"({score.bound.queries} images of {search.real_stream!r}, {search.estimate} estimate, "
                  f"{search.samples_per_class} generated per class; total {score.bound.total:.2f}); "
                  f"the paper's chosen ImageNet strategy: {PAPER_CHOSEN_BOUND}", markup=False, highlight=False, soft_wrap=True)
    return 0


def _search(args: argparse.Namespace) -> int:
    from cluster.strategy_search import PAPER_CHOSEN_BOUND, search_strategies, write_search_outputs

    job, search = _load(args, needs_grid=True)
    with progress_bar("strategy search") as update:
        result = search_strategies(job, search, on_progress=update)
    table = Table(title=f"causal bound log P(x|z) per strategy ({result.real_images} real images of {result.real_stream!r}, "
                        f"{search.samples_per_class} generated per class, {search.estimate} estimate)")
    for column in ("truncation", "top_k", "scale", "offset range", "log P(x|z)", ""):
        table.add_column(column, justify="left" if column == "" else "right")
    for score in result.scores:
        strategy = score.strategy
        offsets = "-" if strategy.offset_range is None else f"[{strategy.offset_range[0]:g}, {strategy.offset_range[1]:g}]"
        intervenes = strategy.kind == "intervention"
        table.add_row(f"{strategy.truncation:g}", str(strategy.top_k) if intervenes else "-",
                      f"{strategy.scale:g}" if intervenes else "-", offsets if intervenes else "-",
                      f"{score.bound.mean:.4f}", "chosen" if score is result.chosen else "")
    console.print(table)
    outputs = write_search_outputs(result, search.search_dir(job.local_output_dir))
    console.print(f"chosen: {result.chosen.label}, log P(x|z) = {result.chosen.bound.mean:.4f} "
                  f"(the paper's chosen ImageNet strategy: {PAPER_CHOSEN_BOUND}) -> {outputs.chosen}; "
                  f"use it as datagen.strategy: {{file: {outputs.chosen}}}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"table -> {outputs.table}, figure -> {outputs.figure}", markup=False, highlight=False, soft_wrap=True)
    return 0


def add_strategy_commands(commands: argparse._SubParsersAction,
                          add_config_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``strategy score`` and ``strategy search`` to ``genint``'s subparsers (handlers: STRATEGY_HANDLERS)."""
    strategy = commands.add_parser("strategy", help="the causal bound log P(x|z) of intervention strategies "
                                   "(the job's strategy_search section)").add_subparsers(dest="action", required=True)
    add_config_arguments(strategy.add_parser("score", help="log P(x|z) of the job's datagen.strategy against held-out real images"))
    add_config_arguments(strategy.add_parser("search", help="log P(x|z) of every strategy of strategy_search.grid: a table, "
                                             "a figure and the chosen (highest) strategy as a file datagen.strategy can name"))


STRATEGY_HANDLERS = {("strategy", "score"): _score, ("strategy", "search"): _search}
