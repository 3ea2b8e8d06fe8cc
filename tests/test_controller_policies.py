"""The job controller's policies and its state machine, without Ray: every decision is named, has its
reason, and moves the job between the states of cluster/policies.py."""

import logging

import pytest

from cluster.config import JobConfig
from cluster.controller import (
    Drained,
    GenerationFailed,
    JobController,
    RunBegan,
    TrainingFailed,
    TrainingReturned,
    TrainingStarted,
)
from cluster.errors import ClusterError
from cluster.policies import (
    JobState,
    Move,
    after_generation_error,
    after_training_run,
    on_datagen_scale,
    on_stop,
    on_trainer_scale,
)
from datagen.errors import DatagenError
from trainers.errors import TrainError

# Training is ending or has ended.
TRAINING_ENDS = (JobState.STOPPING, JobState.DRAINING, JobState.FINISHED, JobState.STOPPED, JobState.FAILED)


def test_after_a_training_run_the_job_is_done_stops_or_restarts_for_a_rescale():
    assert after_training_run(10, 10, stopping=False).move == "done"
    assert after_training_run(10, 10, stopping=True).move == "done"
    assert after_training_run(4, 10, stopping=True).move == "stop"
    assert after_training_run(4, 10, stopping=False).move == "restart"
    assert "step 4" in after_training_run(4, 10, stopping=False).reason


def test_a_trainer_scale_rescales_only_while_training_goes_on_and_to_another_count():
    for state in (JobState.STARTING, JobState.RUNNING, JobState.RESCALING):
        assert on_trainer_scale("j", state, 2, target=1).move is Move.RESCALE
        assert on_trainer_scale("j", state, 1, target=1).move is Move.UNCHANGED
    for state in TRAINING_ENDS:
        decision = on_trainer_scale("j", state, 2, target=1)
        assert decision.move is Move.REJECT and decision.reason == f"job 'j' is {state}: its training cannot be rescaled"
    assert on_trainer_scale("j", JobState.RUNNING, 0, target=1).reason == "--trainers must be >= 1 (got 0)"


def test_a_datagen_scale_resizes_the_running_pool_or_the_one_to_come():
    assert on_datagen_scale("j", JobState.RUNNING, 3, "transfer", generator_to_come=False).reason == "transfer pool resized to 3 actors"
    # A running pool takes the request while training stops (generation goes on until it has returned).
    assert on_datagen_scale("j", JobState.STOPPING, 3, "datagen", generator_to_come=False).move is Move.RESIZE
    assert on_datagen_scale("j", JobState.STARTING, 3, None, generator_to_come=True).move is Move.RESIZE_AT_START
    no_pool = "job 'j' has no datagen pool running (generation finished or is off)"
    assert on_datagen_scale("j", JobState.STOPPING, 3, None, generator_to_come=True).reason == no_pool
    assert on_datagen_scale("j", JobState.RUNNING, 3, None, generator_to_come=False).reason == no_pool
    assert on_datagen_scale("j", JobState.RUNNING, 0, "datagen", generator_to_come=False).move is Move.REJECT


def test_a_stop_stops_a_job_whose_training_goes_on_and_nothing_else():
    for state in (JobState.STARTING, JobState.RUNNING, JobState.RESCALING):
        assert on_stop(state).move is Move.STOP_JOB
    for state in TRAINING_ENDS:
        assert on_stop(state).move is Move.IGNORE


def test_a_generation_error_fails_the_job_and_says_whether_training_stops_first():
    running = after_generation_error(JobState.RUNNING, "actor g0: boom")
    draining = after_generation_error(JobState.DRAINING, "actor g0: boom")
    assert running.move is draining.move is Move.FAIL
    assert "actor g0: boom" in running.reason and "training stops" in running.reason and "training" not in draining.reason


@pytest.fixture
def controller(tmp_path) -> JobController:
    """A controller object outside Ray (its state machine needs none): no generation, one worker."""
    config = JobConfig.model_validate({"name": "j", "output_dir": str(tmp_path / "out"),
                                       "train": {"model": "small_cnn", "max_steps": 10, "streams": {"original": {"batch_size": 8}}}})
    return JobController(config, None, frozenset(), use_gpu=False)


def _phase(controller: JobController) -> JobState:
    return controller.status().phase


def test_a_rescale_then_a_stop_moves_the_job_and_logs_each_decision_with_its_reason(controller, caplog):
    caplog.set_level(logging.INFO, logger="cluster.controller")
    controller._step(RunBegan())
    assert _phase(controller) == "running" and not controller.training_should_stop()

    assert controller.scale_trainers(2) == "j: training checkpoints and restarts with 2 workers"
    assert _phase(controller) == "rescaling" and controller.training_should_stop()
    assert controller.scale_trainers(2) == "j: training already has 2 workers"
    assert controller._step(TrainingReturned(4)).move is Move.RESTART and _phase(controller) == "rescaling"
    controller._step(TrainingStarted(2))
    assert _phase(controller) == "running"

    controller.stop()
    assert _phase(controller) == "stopping" and controller.training_should_stop()
    with pytest.raises(ClusterError, match="^job 'j' is stopping: its training cannot be rescaled$"):
        controller.scale_trainers(3)
    assert controller._step(TrainingReturned(6)).move is Move.STOP and _phase(controller) == "draining"
    controller._step(Drained())
    assert _phase(controller) == "stopped"

    logged = [record.getMessage() for record in caplog.records]
    assert "job j: [rescale] training checkpoints and restarts with 2 workers (running -> rescaling)" in logged
    assert "job j: [restart] training stopped at step 4 for a rescale: restarting from its checkpoint " \
           "(rescaling -> rescaling)" in logged
    assert any(line.startswith("job j: [stop_job] stop requested") and line.endswith("(running -> stopping)") for line in logged)
    assert any(line.startswith("job j: [reject] job 'j' is stopping") for line in logged)
    assert logged[-1] == "job j: generation has ended (draining -> stopped)"


def test_a_rescale_back_to_the_running_count_keeps_the_run(controller):
    controller._step(RunBegan())
    controller.scale_trainers(2)
    controller.scale_trainers(1)
    assert _phase(controller) == "running" and not controller.training_should_stop()


def test_a_generation_error_stops_training_and_fails_the_job_once_drained(controller):
    controller._step(RunBegan())
    assert controller._step(GenerationFailed(DatagenError("actor g0, unit c1-s0-2: boom"))).move is Move.FAIL
    assert _phase(controller) == "stopping" and controller.training_should_stop()
    controller._step(TrainingReturned(3))
    controller._step(Drained())
    status = controller.status()
    assert status.phase == "failed" and status.error == "actor g0, unit c1-s0-2: boom"


def test_a_finished_job_ignores_a_late_stop_and_a_failed_training_fails_it(controller):
    controller._step(RunBegan())
    assert controller._step(TrainingReturned(10)).move is Move.DONE
    controller._step(Drained())
    controller.stop()
    assert _phase(controller) == "finished"
    with pytest.raises(ClusterError, match="has no datagen pool running"):
        controller.scale_datagen(2)

    failing = JobController(controller.config, None, frozenset(), use_gpu=False)
    failing._step(RunBegan())
    failing._step(TrainingFailed(TrainError("rank 0 holds 4 samples, fewer than batch_size 8")))
    assert _phase(failing) == "draining"
    failing._step(Drained())
    assert failing.status().phase == "failed" and failing.status().error.startswith("rank 0 holds 4 samples")
