"""Resume after a kill: the losses after resuming equal those of an uninterrupted run (CPU, fixed seed)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import ray

from trainers.callbacks import History, JsonlLog
from trainers.config import TrainConfig
from trainers.memory_source import MemorySourceFactory, colour_classes
from trainers.ray_train import train

CONFIG = {
    "model": "resnet18",
    "num_classes": 3,
    "max_steps": 6,
    "checkpoint_every_steps": 3,
    "report_every_steps": 1,
    "max_failures": 0,
    "seed": 7,
    "optimizer": {"lr": 0.004, "decay_unit": "steps", "decay_every": 4},
    "streams": {"original": {"batch_size": 6}, "interventional": {"batch_size": 2, "loss_weight": 0.5}},
}
WORKERS = 2

# The run that is killed: the same job, whose loader hangs when step 5 asks for data, so the
# kill lands after the step-3 checkpoint and after step 4 (which the resumed run must redo).
KILLED_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import ray
    from trainers.callbacks import JsonlLog
    from trainers.config import TrainConfig
    from trainers.memory_source import MemorySourceFactory, colour_classes
    from trainers.ray_train import train

    output_dir, config_json, workers = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])

    class HangingFactory(MemorySourceFactory):
        def __call__(self, stream, config, rank, world_size, device):
            source = super().__call__(stream, config, rank, world_size, device)
            next_batch, calls = source.next_batch, []
            def hanging_next_batch():
                calls.append(1)
                if len(calls) == 5:
                    (output_dir / f"hanging-{rank}").touch()
                    time.sleep(3600)
                return next_batch()
            source.next_batch = hanging_next_batch
            return source

    ray.init(num_cpus=2, include_dashboard=False)
    datasets = {"original": colour_classes(96, 3, 16, 0), "interventional": colour_classes(32, 3, 16, 1)}
    train(TrainConfig.model_validate_json(config_json), HangingFactory(datasets), output_dir,
          [JsonlLog(output_dir / "killed.jsonl")], num_workers=workers)
""")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def datasets():
    return {"original": colour_classes(96, 3, 16, 0), "interventional": colour_classes(32, 3, 16, 1)}


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.mark.slow
def test_resume_after_kill_reproduces_the_uninterrupted_losses(local_ray, tmp_path: Path):
    config = TrainConfig.model_validate(CONFIG)
    uninterrupted = History()
    train(config, MemorySourceFactory(datasets()), tmp_path / "uninterrupted", [uninterrupted], num_workers=WORKERS)

    run_dir = tmp_path / "killed"
    run_dir.mkdir()
    # Its own session, so the kill reaches the driver and the local Ray it started, all at once.
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(run_dir), config.model_dump_json(), str(WORKERS)],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        hanging = [run_dir / f"hanging-{rank}" for rank in range(WORKERS)]
        log = run_dir / "killed.jsonl"
        wait_for(lambda: all(path.exists() for path in hanging), 300, "the killed run to reach step 5")
        wait_for(lambda: log.exists() and len(log.read_text().splitlines()) == 4 * WORKERS, 60, "step 4's reports")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert (run_dir / "checkpoints" / "latest").read_text() == "step_000000003"

    resumed = History()
    train(config, MemorySourceFactory(datasets()), run_dir, [resumed], num_workers=WORKERS)

    killed = JsonlLog.read(run_dir / "killed.jsonl")
    for rank in range(WORKERS):
        expected = uninterrupted.losses(rank)
        assert [r.step for r in resumed.steps if r.rank == rank] == [4, 5, 6]
        assert [r.loss for r in killed if r.rank == rank] == expected[:4]
        assert resumed.losses(rank) == expected[3:]
    # The schedule resumed too: lr dropped /10 after step 4 in both runs.
    assert [r.lr for r in resumed.steps if r.rank == 0] == [r.lr for r in uninterrupted.steps if r.rank == 0][3:]
