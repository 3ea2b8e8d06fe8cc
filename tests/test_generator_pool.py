"""The generator actor pool on a local Ray: exactly-once under a killed actor, live resize, rerun skips."""

import dataclasses
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import ray

from datagen.errors import DatagenError
from datagen.service import plan_generation, planned_samples, start_pool
from shards.manifest import Manifest
from shards.reader import committed_shards, iter_samples
from shards.verify import verify_store
from tests.datagen_helpers import actor_handles, save_tiny_biggan, tiny_datagen_config, tiny_store

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("local_ray")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    return save_tiny_biggan(tmp_path_factory.mktemp("tiny-biggan"))


def _keys(stream_dir: Path) -> list[str]:
    return [sample["__key__"] for sample in iter_samples([path for path, _ in committed_shards(stream_dir)])]


def _plan(tiny, root: Path, **overrides):
    config = tiny_datagen_config(*tiny, strategy={"kind": "intervention", "truncation": 0.5, "top_k": 4,
                                                  "components_per_seed": 2, "seeds_per_class": 8}, seeds_per_unit=4, **overrides)
    settings, units = plan_generation(config, root, tiny_store(root / "store", 3))
    return config, settings, units


def test_killed_actor_mid_unit_still_gives_exactly_the_planned_samples(tiny, tmp_path):
    config, settings, units = _plan(tiny, tmp_path)
    stream_dir = tmp_path / "store" / "interventional"
    pool = start_pool(settings, units)
    killed = threading.Event()

    def kill_after_first_commit():
        while not Manifest(stream_dir).shards():
            time.sleep(0.002)
        ray.kill(actor_handles(pool)["g0"])
        killed.set()

    killer = threading.Thread(target=kill_after_first_commit, daemon=True)
    killer.start()
    report = pool.run()
    pool.shutdown()
    assert killed.is_set() and report.restarts == 1
    keys = _keys(stream_dir)
    assert len(keys) == planned_samples(config, units) == 48
    assert not [key for key, count in Counter(keys).items() if count > 1]
    findings, _ = verify_store(tmp_path / "store")
    assert not [finding for finding in findings if finding.is_problem]
    assert all(progress.done for progress in Manifest(stream_dir).unit_progress().values())


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
