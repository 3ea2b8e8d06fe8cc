"""The one sequence of a job's datagen pools (cluster.generation.run_datagen_stages), without Ray:
what `genint datagen` and the controller both run."""

from pathlib import Path

from cluster.config import JobConfig
from cluster.generation import PoolStage, datagen_stages, job_store, run_datagen_stages
from datagen.actors import ActorSettings
from datagen.pool import PoolReport
from datagen.units import plan_units


def _job(tmp_path: Path, transfer_actors: int) -> tuple[JobConfig, tuple]:
    config = JobConfig(name="stages", output_dir=tmp_path, shards={"max_samples_per_shard": 5},
                       datagen={"stream": "gen", "transfer": {"actors": transfer_actors, "stream": "styled"}})
    settings = ActorSettings(config.datagen, job_store(config, "abc"), "weights", tmp_path / "directions.npz")
    return config, (settings, plan_units([0, 1], 4, 2))


def test_generation_runs_first_then_transfer(tmp_path):
    config, plan = _job(tmp_path, transfer_actors=2)
    ran: list[PoolStage] = []
    reports = run_datagen_stages(config, plan, lambda stage: ran.append(stage) or PoolReport(images=len(ran)))
    assert [(stage.stage, stage.stream, stage.label) for stage in ran] == [
        ("datagen", "gen", "generate gen"), ("transfer", "styled", "transfer -> styled")]
    assert reports == {"gen": PoolReport(images=1), "styled": PoolReport(images=2)}
    assert ran[0].summary(PoolReport(units=4, images=16, shards=4, restarts=1), config.store_dir) == (
        f"datagen: 16 images in 4 shards from 4 units (1 actor restarts) -> {tmp_path / 'shards' / 'gen'}")
    assert ran[1].summary(PoolReport(images=9, shards=2), config.store_dir) == (
        f"transfer: 9 images in 2 shards -> {tmp_path / 'shards' / 'styled'}")


def test_no_transfer_stage_without_transfer_actors(tmp_path):
    config, plan = _job(tmp_path, transfer_actors=0)
    assert [stage.stage for stage in datagen_stages(config, plan)] == ["datagen"]


def test_a_stopping_job_starts_no_later_stage(tmp_path):
    config, plan = _job(tmp_path, transfer_actors=2)
    asked = []

    def stopping() -> bool:
        asked.append(True)
        return True

    ran = []
    reports = run_datagen_stages(config, plan, lambda stage: ran.append(stage.stage), stopping)
    assert ran == ["datagen"] and list(reports) == ["gen"] and asked == [True]


def test_the_store_carries_the_job_shard_settings_and_hash(tmp_path):
    config, (settings, _) = _job(tmp_path, transfer_actors=0)
    assert settings.store.root == config.store_dir == tmp_path / "shards"
    assert (settings.store.max_samples_per_shard, settings.store.config_hash) == (5, "abc")
    assert settings.store.max_bytes_per_shard == config.shards.max_bytes_per_shard
