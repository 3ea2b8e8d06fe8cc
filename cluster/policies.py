"""The job controller's states and the policies that decide its moves.

The controller (cluster/controller.py) passes every event through one ``_step``. Where an event
asks for a decision (a training run returned, a scale request, a generation error, a stop
request), ``_step`` calls the policy here, which returns a named ``Decision`` with the reason the
controller logs, as Ray Train's failure policy does. Nothing here touches Ray: the policies are
unit-tested alone (tests/test_controller_policies.py).
"""

from dataclasses import dataclass
from enum import StrEnum


class JobState(StrEnum):
    """Where a job is (``JobStatus.phase``)."""

    STARTING = "starting"  # the controller exists; its run has not begun
    RUNNING = "running"  # training runs, generation beside it
    RESCALING = "rescaling"  # the training run ends at a checkpoint and restarts with the requested workers
    STOPPING = "stopping"  # stop requested or generation failed: training ends at its next checkpoint
    DRAINING = "draining"  # training has returned: the pools finish their in-flight units, no new one starts
    FINISHED = "finished"  # training reached max_steps
    STOPPED = "stopped"  # training ended early on request (a rerun resumes)
    FAILED = "failed"  # training or generation raised


# Training still goes on: it may be stopped or rescaled.
TRAINING_STATES = frozenset({JobState.STARTING, JobState.RUNNING, JobState.RESCALING})


class Move(StrEnum):
    """What a policy decided."""

    # after a training run
    DONE = "done"  # it reached max_steps
    STOP = "stop"  # it ended early because the job is stopping
    RESTART = "restart"  # it ended for a rescale: run again from its checkpoint
    # on a scale request
    RESCALE = "rescale"  # the trainer group checkpoints and restarts with the new count
    UNCHANGED = "unchanged"  # the count asked for is the count already set
    RESIZE = "resize"  # the running datagen pool grows or shrinks
    RESIZE_AT_START = "resize_at_start"  # the generator pool, still to start, starts with the new count
    REJECT = "reject"  # the request cannot be met (the reason says why)
    # on a stop request or a generation error
    STOP_JOB = "stop_job"  # training checkpoints and returns, then the pools finish their in-flight units
    IGNORE = "ignore"  # nothing left to stop
    FAIL = "fail"  # the job fails once training has returned and the pools have finished


@dataclass(frozen=True)
class Decision:
    move: Move
    reason: str  # what the controller logs, and what a request's caller reads


def after_training_run(steps: int, max_steps: int, stopping: bool) -> Decision:
    """A training run returned at ``steps``: the job is done, stops, or restarts the run (a rescale)."""
    if steps >= max_steps:
        return Decision(Move.DONE, f"training reached max_steps ({max_steps})")
    if stopping:
        return Decision(Move.STOP, f"training stopped at step {steps} of {max_steps}: the job is stopping")
    return Decision(Move.RESTART, f"training stopped at step {steps} for a rescale: restarting from its checkpoint")


def after_generation_error(state: JobState, error: str) -> Decision:
    """A datagen pool raised ``error`` (its first line): the job fails; training, if it still runs, stops first."""
    if state in TRAINING_STATES or state is JobState.STOPPING:
        return Decision(Move.FAIL, f"generation failed ({error}): training stops at its next checkpoint and the job fails")
    return Decision(Move.FAIL, f"generation failed ({error}) while its pools finished their units: the job fails")


def on_stop(state: JobState) -> Decision:
    """A stop request: training checkpoints and returns, unless it is ending already."""
    if state in TRAINING_STATES:
        return Decision(Move.STOP_JOB, "stop requested: training checkpoints and returns, then the pools finish "
                                       "their in-flight units")
    return Decision(Move.IGNORE, f"stop requested while the job is {state}: nothing more to stop")


def on_trainer_scale(job: str, state: JobState, workers: int, target: int) -> Decision:
    """A request for ``workers`` trainer workers, where ``target`` is the count set now."""
    if workers < 1:
        return Decision(Move.REJECT, f"--trainers must be >= 1 (got {workers})")
    if state not in TRAINING_STATES:
        return Decision(Move.REJECT, f"job {job!r} is {state}: its training cannot be rescaled")
    if workers == target:
        return Decision(Move.UNCHANGED, f"training already has {workers} workers")
    return Decision(Move.RESCALE, f"training checkpoints and restarts with {workers} workers")


def on_datagen_scale(job: str, state: JobState, actors: int, running_pool: str | None, generator_to_come: bool) -> Decision:
    """A request for ``actors`` datagen actors.

    Args:
        running_pool: the stage of the pool running now (``datagen`` or ``transfer``), None if none.
        generator_to_come: the job generates and its generator pool has not started yet.
    """
    if actors < 1:
        return Decision(Move.REJECT, f"--datagen must be >= 1 (got {actors})")
    if running_pool is not None:
        return Decision(Move.RESIZE, f"{running_pool} pool resized to {actors} actors")
    if generator_to_come and state in TRAINING_STATES:
        return Decision(Move.RESIZE_AT_START, f"generation will start with {actors} actors")
    return Decision(Move.REJECT, f"job {job!r} has no datagen pool running (generation finished or is off)")
