"""The job controller on a local Ray: training sees data committed after it started, killed actors and
workers resume, and a running job scales its datagen actors and trainer workers."""

import os
import shutil
import signal
import threading
import urllib.request

import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families
from ray.util.state import list_actors

from cluster.cli import main
from cluster.controller_client import NAMESPACE, controller_name, job_metrics_url, job_status
from cluster.run import JobResult, run_job
from datagen.service import planned_samples
from datagen.units import plan_units
from shards.manifest import Manifest
from shards.storage import S3Store
from tests.job_helpers import assert_store_exact, job_assets, tiny_job, wait_for


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return job_assets(tmp_path_factory.mktemp("assets"))


@pytest.fixture(scope="module")
def cluster(seaweedfs):
    """A local Ray with room for two actors and two trainer workers (logical CPUs), dashboard on for Ray Train.

    Started after the session's SeaweedFS, so its workers inherit the AWS variables (the bucket job below)."""
    ray.init(num_cpus=4, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False)
    yield
    ray.shutdown()


class Background:
    """``run_job`` in a thread; ``result()`` joins it and re-raises its error."""

    def __init__(self, config) -> None:
        self.value: JobResult | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(config,), daemon=True)
        self.thread.start()

    def _run(self, config) -> None:
        try:
            self.value = run_job(config)
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            self.error = error

    def running(self) -> bool:
        if not self.thread.is_alive() and self.error is not None:
            raise self.error
        return self.thread.is_alive()

    def result(self, timeout_s: float = 600) -> JobResult:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the job did not end"
        if self.error is not None:
            raise self.error
        return self.value


def _status_when(job: Background, name: str, condition, what: str):
    """The job's status once ``condition(status)`` holds (fails if the job ends first)."""
    def check():
        assert job.running(), f"the job ended before {what}"
        try:
            status = job_status(name)
        except Exception:  # noqa: BLE001 - the controller is not up yet
            return None
        return status if condition(status) else None

    return wait_for(check, what)


def _kill_process_of(job: Background, class_name: str) -> int:
    """SIGKILL the process of a live actor of ``class_name`` (a crash, not a Ray-level kill); returns its pid."""
    def alive():
        assert job.running(), f"the job ended before a {class_name} was killed"
        # This cluster's address: other Ray instances may run on the machine.
        return list_actors(address=ray.get_runtime_context().gcs_address,
                           filters=[("class_name", "=", class_name), ("state", "=", "ALIVE")])

    actors = wait_for(alive, f"a live {class_name}")
    os.kill(actors[0].pid, signal.SIGKILL)
    return actors[0].pid


def _scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _planned(config) -> int:
    datagen = config.datagen
    return planned_samples(datagen, plan_units(list(range(10)), datagen.strategy.seeds_per_class, datagen.seeds_per_unit))


@pytest.mark.slow
def test_training_reads_interventional_samples_committed_after_it_started(cluster, assets, tmp_path):
    # Generation starts only once the trainer's workers are up, and every step waits for 4
    # interventional samples: all of them are committed while training runs.
    config = tiny_job(assets, tmp_path / "out", "after-start", seeds_per_class=4,
                      interventional={"batch_size": 4, "when_short": "wait"},
                      train={"max_steps": 5, "checkpoint_every_steps": 100},
                      datagen={"start": "after_trainer_ready"})
    result = run_job(config)

    started = result.status.train.starts[0].time
    records = Manifest(config.store_dir / "interventional").shards()
    assert records and min(record.time for record in records) > started
    assert result.trained_samples["interventional"] == 5 * 4
    assert result.status.phase == "finished" and result.train.steps == 5
    assert_store_exact(config.store_dir)


def _lose_local_checkpoints(config) -> None:
    """Remove the job's local checkpoint steps and ``latest``, as a trainer pod rescheduled on another node has none."""
    directory = config.local_output_dir / "train" / "checkpoints"
    for path in directory.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["directory", "bucket"])
def test_killed_datagen_actor_and_trainer_worker_lose_nothing_and_training_resumes(cluster, seaweedfs, assets, tmp_path, backend):
    # Training needs every planned interventional sample (50 steps x 8 = 400), so it cannot end
    # before generation has; the kills land while both run. On a bucket (output_dir s3://: the
    # store there, checkpoints mirrored there) the killed worker's local checkpoints go too, before
    # Ray Train restarts the workers (seconds later): training can only resume from the bucket.
    output = f"s3://{seaweedfs.new_bucket()}/out" if backend == "bucket" else tmp_path / "out"
    config = tiny_job(assets, output, "killed", seeds_per_class=20,
                      interventional={"batch_size": 8, "when_short": "wait"},
                      train={"max_steps": 50, "checkpoint_every_steps": 5, "max_failures": 2},
                      datagen={"start": "after_trainer_ready"})
    job = Background(config)
    _kill_process_of(job, "GeneratorActor")
    _status_when(job, "killed", lambda status: status.train.checkpoint is not None, "the first checkpoint")
    _kill_process_of(job, "RayTrainWorker")
    if config.checkpoint_url is not None:
        _lose_local_checkpoints(config)
    try:
        result = job.result()
    finally:
        if config.checkpoint_url is not None:
            shutil.rmtree(config.local_output_dir, ignore_errors=True)  # the bucket's scratch directory under TMPDIR

    status = result.status
    assert status.pools["datagen"].restarts >= 1
    starts = [start.step for start in status.train.starts]
    assert starts[0] == 0 and len(starts) >= 2 and starts[-1] > 0 and starts[-1] % 5 == 0, starts
    assert result.train.steps == 50 and status.phase == "finished"
    if config.checkpoint_url is not None:
        assert S3Store(config.checkpoint_url).get("latest", "latest", 100) == b"step_000000050"
    assert_store_exact(config.store_dir, planned=_planned(config))


@pytest.mark.slow
def test_scale_datagen_and_trainers_of_a_running_job(cluster, assets, tmp_path, capsys):
    # A plan far longer than the test (10,000 images) and a training run stopped by the test.
    config = tiny_job(assets, tmp_path / "out", "scaled", seeds_per_class=500,
                      interventional={"batch_size": 4, "when_short": "reuse"},
                      train={"max_steps": 100_000, "checkpoint_every_steps": 100_000})
    job = Background(config)

    _status_when(job, "scaled", lambda status: status.pools.get("datagen") and status.pools["datagen"].images_by_actor.get("g0"),
                 "g0's first images")
    assert main(["scale", "scaled", "--datagen", "2"]) == 0
    status = _status_when(job, "scaled", lambda status: status.pools["datagen"].images_by_actor.get("g1"),
                          "the second actor's images")
    assert status.pools["datagen"].actors == 2
    metrics = _scrape(job_metrics_url("scaled"))
    assert metrics[("genint_images_generated_total", (("actor", "g1"), ("job", "scaled"), ("stream", "interventional")))] > 0
    assert metrics[("genint_actors", (("job", "scaled"), ("pool", "datagen")))] == 2
    printed = capsys.readouterr().out
    assert main(["top", "scaled", "--once", "--interval", "0.5"]) == 0  # the URL comes from the controller
    assert "interventional" in capsys.readouterr().out

    before = _status_when(job, "scaled", lambda status: status.train.workers == 1 and status.train.step >= 1,
                          "training with one worker").train.step
    assert main(["scale", "scaled", "--trainers", "2"]) == 0
    status = _status_when(job, "scaled", lambda status: status.train.workers == 2
                          and status.train.step > status.train.starts[-1].step, "a step with two workers")
    resumed = status.train.starts[-1]
    assert resumed.workers == 2 and resumed.step >= before and len(status.train.starts) == 2
    assert _scrape(status.metrics_url)[("genint_trainer_workers", (("job", "scaled"),))] == 2

    ray.get(ray.get_actor(controller_name("scaled"), namespace=NAMESPACE).stop.remote())
    result = job.result()
    assert result.status.phase == "stopped" and result.train.steps < 100_000
    assert_store_exact(config.store_dir)
    assert "pool resized to 2 actors" in printed + capsys.readouterr().out


@pytest.mark.slow
def test_scale_of_a_job_that_is_not_running_fails_in_one_line(cluster, capsys):
    assert main(["scale", "nosuchjob", "--datagen", "2"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("genint: error: no running job 'nosuchjob'") and "\n" not in error
