"""The paper's two analyses inside the experiment: the causal-bound search that chooses the
interventional arm's strategy, and the correlation analysis of every stream (Fig. 3).

The search scores each strategy of ``search.grid`` against the validation stream (held-out
colours of its own, never the causal test's) with the penultimate features of the original arm's
first classifier, a classifier trained on the original stream as the issue asks for digits. Both
are reused on a rerun while their inputs are unchanged.
"""

import json
from pathlib import Path

from pydantic import BaseModel

from cluster.correlation import correlation_analysis, regressor_line
from cluster.correlation_config import CorrelationConfig
from cluster.progress import progress_bar
from cluster.run import prepare_generator
from cluster.strategy_search import FIGURE_FILE, PAPER_CHOSEN_BOUND, TABLE_FILE, search_strategies, write_search_outputs
from cluster.strategy_search_config import FeatureExtractorConfig, StrategySearchConfig
from datagen.strategy_config import StrategyConfig
from experiments.colored_digits.config import BoundSearchConfig, ExperimentConfig
from experiments.colored_digits.jobs import VALIDATION_STREAM, data_job
from shards.files import write_durably

SEARCH_DIR = "strategy-search"
# Written last, beside the search's outputs: what they were computed from (a rerun with the same inputs reuses them).
SEARCH_INPUTS_FILE = "inputs.json"
CORRELATION_FILE = "correlation.json"


class StrategyBound(BaseModel):
    label: str
    log_p_x_given_z: float
    chosen: bool


class BoundSummary(BaseModel):
    """The search as the report shows it: the bound of every strategy, the chosen one and the figure."""

    strategies: list[StrategyBound]
    chosen: StrategyConfig
    chosen_label: str
    chosen_bound: float
    paper_chosen_bound: float
    real_stream: str
    real_images: int
    figure: str


class StreamCorrelationSummary(BaseModel):
    stream: str
    held_out_samples: int
    multiple_of_chance: float


class CorrelationSummary(BaseModel):
    """Fig. 3 as the report shows it: per stream, label accuracy from predicted nuisances over chance."""

    streams: list[StreamCorrelationSummary]
    regressor: str  # one line on the regressor's fit


def _search_settings(search: BoundSearchConfig, train_model: str, extractor_checkpoint: Path) -> StrategySearchConfig:
    return StrategySearchConfig(
        real_stream=VALIDATION_STREAM, samples_per_class=search.samples_per_class, temperature=search.temperature,
        estimate=search.estimate, grid=search.grid, device="cpu",
        feature_extractor=FeatureExtractorConfig(arch=train_model, weights=str(extractor_checkpoint)))


def _summary(table: dict, figure: Path) -> BoundSummary:
    strategies = [StrategyBound(label=row["label"], log_p_x_given_z=row["log_p_x_given_z"], chosen=row["chosen"])
                  for row in table["strategies"]]
    chosen = next(row for row in table["strategies"] if row["chosen"])
    return BoundSummary(strategies=strategies, chosen=StrategyConfig.model_validate(chosen["strategy"]),
                        chosen_label=chosen["label"], chosen_bound=chosen["log_p_x_given_z"],
                        paper_chosen_bound=PAPER_CHOSEN_BOUND, real_stream=table["settings"]["real_stream"],
                        real_images=table["real_images"], figure=str(figure))


def choose_interventional_strategy(experiment: ExperimentConfig, extractor_checkpoint: Path, extractor_hash: str) -> BoundSummary:
    """Search ``experiment.search.grid`` over the interventional strategy; the highest bound wins.

    Args:
        extractor_checkpoint: the original arm's first classifier (its checkpoint directory).
        extractor_hash: that arm's job hash: a retrained extractor redoes the search.
    """
    directory = experiment.output_dir / SEARCH_DIR
    search = _search_settings(experiment.search, experiment.train.model, extractor_checkpoint)
    job = data_job(experiment, "interventional")
    inputs = {"search": search.model_dump(mode="json"), "strategy": job.datagen.strategy.model_dump(mode="json"),
              "extractor_job": extractor_hash}
    record = directory / SEARCH_INPUTS_FILE
    if record.is_file() and json.loads(record.read_text()) == inputs:
        return _summary(json.loads((directory / TABLE_FILE).read_text()), directory / FIGURE_FILE)
    prepare_generator(job)  # the directions every intervention needs
    with progress_bar("strategy search") as update:
        result = search_strategies(job, search, update)
    outputs = write_search_outputs(result, directory)
    write_durably(record, json.dumps(inputs, indent=1).encode())
    return _summary(json.loads(outputs.table.read_text()), outputs.figure)


def _correlation_summary(result: dict) -> CorrelationSummary:
    streams = [StreamCorrelationSummary(stream=name, held_out_samples=entry["held_out"]["samples"],
                                        multiple_of_chance=entry["held_out"]["multiple_of_chance"])
               for name, entry in result["streams"].items()]
    return CorrelationSummary(streams=streams, regressor=result["regressor_line"])


def analyse_correlation(experiment: ExperimentConfig, streams: list[str], interventional: StrategyConfig) -> CorrelationSummary:
    """The correlation analysis of ``streams``, its regressor taught by the interventional stream
    (generated with ``interventional``, the strategy the search chose)."""
    config = CorrelationConfig(regressor_stream="interventional", streams=streams, seed=experiment.data.seed, device="cpu")
    # What the analysed streams are made from: a rerun reuses the result while these are unchanged.
    inputs = {"correlation": config.model_dump(mode="json"), "interventional": interventional.model_dump(mode="json"),
              **experiment.model_dump(mode="json", include={"data", "generator", "directions", "observational"})}
    path = experiment.output_dir / CORRELATION_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("inputs") == inputs:
            return _correlation_summary(saved)
    result = correlation_analysis(experiment.store_dir, config)
    # The report's line on the regressor and the inputs go with the result, so a reused analysis shows the same.
    saved = {**result.to_dict(), "regressor_line": regressor_line(result.regressor), "inputs": inputs}
    write_durably(path, (json.dumps(saved, indent=2) + "\n").encode())
    return _correlation_summary(saved)
