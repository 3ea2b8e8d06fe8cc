"""The generator actor pool on a local Ray: exactly-once under a killed actor (on both backends: a
directory, a prefix on the session's SeaweedFS), live resize, rerun skips."""

import dataclasses
import threading
import time
from pathlib import Path

import pytest
import ray

from datagen.errors import DatagenError
from datagen.service import plan_generation, planned_samples, start_pool
from shards.reader import committed_shards, iter_samples
from shards.locations import stream_location
from shards.stores import open_manifest
from tests.datagen_helpers import actor_handles, save_tiny_biggan, tiny_datagen_config, tiny_store
from tests.job_helpers import assert_store_exact

# SeaweedFS (session-scoped) starts before this module's Ray, so the actors inherit its AWS variables.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("seaweedfs", "local_ray")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    return save_tiny_biggan(tmp_path_factory.mktemp("tiny-biggan"))


def _keys(stream_dir: Path) -> list[str]:
    return [sample["__key__"] for sample in iter_samples([path for path, _ in committed_shards(stream_dir)])]


def _plan(tiny, root: Path, store_root: "Path | str | None" = None, **overrides):
    config = tiny_datagen_config(*tiny, strategy={"kind": "intervention", "truncation": 0.5, "top_k": 4,
                                                  "components_per_seed": 2, "seeds_per_class": 8}, seeds_per_unit=4, **overrides)
    settings, units = plan_generation(config, root, tiny_store(store_root or root / "store", 3))
    return config, settings, units


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_killed_actor_mid_unit_still_gives_exactly_the_planned_samples(tiny, tmp_path, backend, seaweedfs):
    store_root = tmp_path / "store" if backend == "local" else f"s3://{seaweedfs.new_bucket()}/store"
    config, settings, units = _plan(tiny, tmp_path, store_root)
    stream_dir = stream_location(store_root) / "interventional"
    pool = start_pool(settings, units)
    killed = threading.Event()

    def kill_after_first_commit():
        while not open_manifest(stream_dir).shards():
            time.sleep(0.002 if backend == "local" else 0.02)  # one LIST per look on object storage
        ray.kill(actor_handles(pool)["g0"])
        killed.set()

    killer = threading.Thread(target=kill_after_first_commit, daemon=True)
    killer.start()
    report = pool.run()
    pool.shutdown()
    assert killed.is_set() and report.restarts == 1
    keys = assert_store_exact(stream_location(store_root), planned=planned_samples(config, units))
    assert len(keys) == 48


def test_rerun_skips_done_units(tiny, tmp_path):
    _, settings, units = _plan(tiny, tmp_path)
    pool = start_pool(settings, units)
    first = pool.run()
    pool.shutdown()
    lines = (tmp_path / "store" / "interventional" / "manifest.jsonl").read_bytes()
    pool = start_pool(settings, units)
    second = pool.run()
    pool.shutdown()
    assert first.units == len(units) and second.units == 0 and second.images == 0
    assert (tmp_path / "store" / "interventional" / "manifest.jsonl").read_bytes() == lines


def test_resize_while_running_adds_an_actor(tiny, tmp_path):
    config, settings, units = _plan(tiny, tmp_path)
    events = []

    def on_event(event):
        events.append(event)
        units_done = len([e for e in events if e.kind == "unit"])
        if event.kind == "unit" and units_done == 1:
            pool.resize(2)
        elif event.kind == "unit" and units_done == 2:
            # The pool started g1 after the resize; units go to it once it is up, so wait for that
            # here (g0 keeps working) rather than let g0 finish the plan alone.
            ray.get(actor_handles(pool)["g1"].__ray_ready__.remote())

    pool = start_pool(settings, units, on_event=on_event)
    report = pool.run()
    pool.shutdown()
    writers = {event.writer_id for event in events if event.kind == "unit"}
    assert writers == {"g0", "g1"} and report.images == planned_samples(config, units)
    assert [event.actors for event in events if event.kind == "resize"] == [1, 2]
    assert len(_keys(tmp_path / "store" / "interventional")) == report.images


@pytest.mark.timeout(180)
def test_a_pool_larger_than_the_cluster_finishes_with_the_actors_that_fit(tiny, tmp_path):
    # local_ray has 2 CPUs and each actor takes one: the third actor is never placed.
    config, settings, units = _plan(tiny, tmp_path, actors=3)
    events = []

    def on_event(event):
        events.append(event)
        if event.kind == "unit" and len([e for e in events if e.kind == "unit"]) == 1:
            # Let the second actor that fits come up before the first finishes the plan alone.
            ray.wait([handle.__ray_ready__.remote() for handle in actor_handles(pool).values()], num_returns=2)

    pool = start_pool(settings, units, on_event=on_event)
    report = pool.run()
    pool.shutdown()
    assert report.units == len(units) and report.images == planned_samples(config, units)
    assert 1 <= len({event.writer_id for event in events if event.kind == "unit"}) <= 2
    placements = [(event.actors, event.pending) for event in events if event.kind == "placement"]
    assert placements[0] == (0, 3) and placements[-1] == (2, 1)
    assert len(_keys(tmp_path / "store" / "interventional")) == report.images


def test_an_actor_that_cannot_start_fails_the_pool_with_one_line(tiny, tmp_path):
    _, settings, units = _plan(tiny, tmp_path)
    pool = start_pool(dataclasses.replace(settings, weights=str(tmp_path / "missing")), units)
    with pytest.raises(DatagenError, match=r"^actor g0 failed to start: .*missing.*not a directory") as error:
        pool.run()
    pool.shutdown()
    assert "\n" not in str(error.value)
