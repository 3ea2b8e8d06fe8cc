"""Generation as a job stage: check the inputs, plan the work units, run the actor pool.

Everything that can be wrong with the inputs (weights, directions, strategy, classes, actor count)
is checked here in the driver before any actor starts, so bad input ends with one line and
nothing written.
"""

import json
from collections.abc import Callable
from pathlib import Path

import torch

from datagen.actors import ActorSettings, GeneratorActor
from datagen.config import DatagenConfig
from datagen.directions import load_directions
from datagen.errors import DatagenError
from datagen.generators.loading import load_generator
from datagen.pool import ActorPool, PoolEvent
from datagen.strategies import component_ranges
from datagen.transfer.vgg import check_vgg_weights
from datagen.transfer_stage import (
    TransferActor,
    TransferStageConfig,
    content_sample_count,
    plan_transfer_units,
)
from datagen.units import WorkUnit, plan_units
from shards.config import StoreRef
from shards.locations import S3Url, StreamLocation
from shards.stores import read_stream_file, write_stream_file

PLAN_FILE = "datagen-plan.json"
# A plan is a few hundred bytes of settings; the bound stops reading a huge file put in its place.
_MAX_PLAN_BYTES = 2**20


def plan_generation(config: DatagenConfig, output_dir: Path, store: StoreRef) -> tuple[ActorSettings, list[WorkUnit]]:
    """Validate the generation inputs and return the actors' settings and every work unit.

    Args:
        config: the job's ``datagen`` section.
        output_dir: the job's output directory (default home of weights and directions).
        store: the store the actors write ``config.stream`` into.

    Raises:
        DatagenError: zero actors, missing or mismatched weights or directions, a strategy the
            directions cannot serve, or classes the generator does not have.
    """
    if config.actors < 1:
        raise DatagenError(f"datagen.actors must be >= 1 to generate (got {config.actors})")
    weights = config.weights_path(output_dir)
    generator = load_generator(config.generator.kind, weights, torch.device("cpu"))
    directions_path = config.directions_path(output_dir)
    directions_hash = None
    if config.strategy.kind == "intervention":
        directions = load_directions(directions_path, latent_dim=generator.latent_dim)
        component_ranges(config.strategy, directions)
        directions_hash = directions.content_hash
    classes = list(range(generator.num_classes)) if config.classes is None else config.classes
    unknown = [index for index in classes if index >= generator.num_classes]
    if unknown:
        raise DatagenError(f"datagen.classes {unknown} are not classes of {generator.generator_id} (it has {generator.num_classes})")
    if config.transfer.actors > 0:
        if isinstance(store.root, S3Url):
            raise DatagenError(f"datagen.transfer.actors: style transfer reads its content stream from a local store only, "
                               f"and this job's store is {store.root}; set datagen.transfer.actors to 0 or use a local shards.root")
        check_vgg_weights(config.transfer.gatys.vgg_weights)
    record_plan(store.stream_dir(config.stream), config, generator.generator_id, directions_hash)
    settings = ActorSettings(datagen=config, store=store, weights=weights, directions_path=directions_path)
    return settings, plan_units(classes, config.strategy.seeds_per_class, config.seeds_per_unit)


# The settings that decide what a stream's samples are (not how many actors make them, or where).
_PLAN_FIELDS = {"generator", "strategy", "stream", "classes", "seeds_per_unit", "seed", "image_format", "jpeg_quality"}


def record_plan(stream_dir: StreamLocation, config: DatagenConfig, generator_id: str, directions_hash: str | None) -> None:
    """Write the stream's generation plan, or refuse when the stream was generated under another one.

    Units are skipped by id on a rerun, so a changed strategy or generator would silently mix two
    plans in one stream; this makes that an error instead.

    Raises:
        DatagenError: naming the settings that differ from the stream's recorded plan.
    """
    plan = config.model_dump(mode="json", include=_PLAN_FIELDS) | {"generator_id": generator_id, "directions_sha256": directions_hash}
    plan["generator"].pop("train", None)
    plan["generator"].pop("cgn_train", None)
    raw = read_stream_file(stream_dir, PLAN_FILE, "generation plan", _MAX_PLAN_BYTES)
    if raw is not None:
        recorded = _recorded_plan(stream_dir / PLAN_FILE, raw)
        changed = sorted(key for key in plan.keys() | recorded.keys() if plan.get(key) != recorded.get(key))
        if changed:
            raise DatagenError(
                f"{stream_dir} was generated with other settings ({', '.join(changed)} differ); "
                "use another output_dir or datagen.stream, or delete the stream to start over"
            )
        return
    write_stream_file(stream_dir, PLAN_FILE, json.dumps(plan, indent=1, sort_keys=True).encode())


def _recorded_plan(path: StreamLocation, raw: bytes) -> dict:
    """The plan a stream was generated with (``raw``, read from ``path``, written by ``record_plan``).

    Raises:
        DatagenError: it is not a JSON object.
    """
    try:
        recorded = json.loads(raw)
    except ValueError as error:
        raise DatagenError(f"{path}: not valid JSON ({error}); genint wrote it with the stream's first units, "
                           "so the stream was changed by hand: delete the stream to start over") from None
    if not isinstance(recorded, dict):
        raise DatagenError(f"{path}: not a JSON object of settings; delete the stream to start over")
    return recorded


def planned_samples(config: DatagenConfig, units: list[WorkUnit]) -> int:
    """Images the whole plan produces."""
    return sum(unit.seed_stop - unit.seed_start for unit in units) * config.strategy.images_per_seed


def start_pool(
    settings: ActorSettings,
    units: list[WorkUnit],
    on_event: Callable[[PoolEvent], None] = lambda event: None,
    use_gpu: bool = False,
) -> ActorPool:
    """A pool of ``settings.datagen.actors`` generator actors over ``units`` (Ray must be initialised)."""
    datagen = settings.datagen
    return ActorPool(
        GeneratorActor, (settings,), settings.store.stream_dir(datagen.stream), units, datagen.actors,
        on_event=on_event, use_gpu=use_gpu, resources=datagen.actor_resources, writer_prefix="g",
    )


def start_transfer_pool(
    stage: TransferStageConfig,
    generation_units: list[WorkUnit],
    store: StoreRef,
    device: str = "auto",
    resources: dict[str, float] | None = None,
    on_event: Callable[[PoolEvent], None] = lambda event: None,
    use_gpu: bool = False,
) -> ActorPool:
    """A pool of ``stage.actors`` transfer actors over the committed content stream.

    The style pool is the first ``stage.style_pool_units`` generation units; actors wait for them.

    Raises:
        DatagenError: zero actors, or no committed content samples.
    """
    if stage.actors < 1:
        raise DatagenError(f"datagen.transfer.actors must be >= 1 to transfer (got {stage.actors})")
    content = content_sample_count(store.root, stage)
    if content == 0:
        raise DatagenError(f"transfer: content stream {store.stream_dir(stage.content_stream)} has no committed samples")
    pool_units = [unit.unit_id for unit in generation_units[: stage.style_pool_units]]
    units = plan_transfer_units(content, stage.samples_per_unit)
    return ActorPool(
        TransferActor, (stage, store, pool_units, device), store.stream_dir(stage.stream), units, stage.actors,
        on_event=on_event, use_gpu=use_gpu, resources=resources, writer_prefix="t",
    )
