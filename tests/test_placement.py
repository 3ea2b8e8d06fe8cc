"""Placement on a multi-node Ray cluster on this machine: generator actors land only on the node
with the ``datagen`` resource, Ray Train workers only on the node with ``trainer``."""

import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass

import pytest
import ray
from ray.cluster_utils import Cluster
from ray.util.state import list_actors

from datagen.service import plan_generation, planned_samples, start_pool
from tests.conftest import free_ports
from tests.datagen_helpers import actor_handles, save_tiny_biggan, tiny_datagen_config, tiny_store
from trainers.config import TrainConfig
from trainers.memory_source import MemorySourceFactory, colour_classes
from trainers.ray_train import train

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Nodes:
    datagen: str
    trainer: str


@pytest.fixture(scope="module")
def nodes():
    """A head with no CPUs (the driver, Ray Train's controller and the dashboard), a `datagen` node, a `trainer` node.

    Nodes are processes on this machine, so their CPU counts are logical. The cluster keeps its
    files, and its ray_current_cluster address file, in a private RAY_TMPDIR: a plain ray.init()
    elsewhere on the machine must not find (and join) this cluster, during or after the test.
    """
    # Short: Ray's Unix socket paths live under it.
    temp_dir = tempfile.mkdtemp(prefix="rayp-", dir="/tmp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_TMPDIR", temp_dir)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": True, "dashboard_host": "127.0.0.1",
                                                                       # not Ray's fixed 8265: another test process's Ray may hold it
                                                                       "dashboard_port": free_ports(1)[0]})
        try:
            datagen = cluster.add_node(num_cpus=2, resources={"datagen": 2})
            trainer = cluster.add_node(num_cpus=2, resources={"trainer": 2})
            ray.init(address=cluster.address, log_to_driver=False)
            yield Nodes(datagen=datagen.node_id, trainer=trainer.node_id)
        finally:
            ray.shutdown()
            cluster.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)


def _actor_nodes(class_name: str) -> list[str | None]:
    """The node of every actor of ``class_name`` the cluster has had (None: never placed)."""
    return [actor.node_id or None for actor in list_actors(filters=[("class_name", "=", class_name)], limit=1000)]


@pytest.mark.timeout(300)
def test_generator_actors_land_only_on_the_datagen_node(nodes, tmp_path):
    weights, directions = save_tiny_biggan(tmp_path / "biggan")
    # Three actors of one `datagen` unit each, on a cluster with two: one is never placed.
    config = tiny_datagen_config(weights, directions, actors=3, actor_resources={"datagen": 1})
    settings, units = plan_generation(config, tmp_path, tiny_store(tmp_path / "store", 8))
    pool = start_pool(settings, units)
    try:
        report = pool.run()
        # The two that fit come up (whether or not they got a unit before the plan ran out); the third never does.
        pings = [handle.__ray_ready__.remote() for handle in actor_handles(pool).values()]
        _, waiting = ray.wait(pings, num_returns=2)
        placed = Counter(_actor_nodes("GeneratorActor"))
    finally:
        pool.shutdown()
    assert report.images == planned_samples(config, units)
    assert len(waiting) == 1 and placed == {nodes.datagen: 2, None: 1}

@pytest.mark.timeout(300)
def test_trainer_workers_land_only_on_the_trainer_node(nodes, tmp_path):
    config = TrainConfig.model_validate({
        "model": "resnet18", "num_classes": 3, "max_steps": 2, "max_failures": 0,
        "workers": 2, "worker_resources": {"CPU": 1, "trainer": 1},
        "optimizer": {"decay_unit": "steps"}, "streams": {"original": {"batch_size": 4}},
    })
    result = train(config, MemorySourceFactory({"original": colour_classes(32, 3, 16, 0)}), tmp_path / "run")
    assert result.steps == 2 and set(result.final_losses) == {0, 1}
    assert _actor_nodes("RayTrainWorker") == [nodes.trainer, nodes.trainer]
