"""The digits-PVR arms' objectives: which losses each arm trains with (seed 003's Table 1 rows), and the
arms built before the multi-task heads keep their job configs (so their finished runs are reused)."""

from pathlib import Path

from cluster.config import config_hash, load_config
from experiments.digits_pvr.config import ARMS, ExperimentConfig
from experiments.digits_pvr.jobs import arm_job, arm_objective

CONFIG = Path(__file__).parent.parent / "configs" / "experiments" / "digits-pvr.yaml"


def test_each_arm_trains_with_its_tables_losses():
    experiment = load_config(CONFIG, ["multitask_weight=0.5"], model=ExperimentConfig)
    losses = {arm: (objective.name, objective.typed, objective.iit_weight, objective.multitask_weight)
              for arm in ARMS for objective in [arm_objective(experiment, arm)]}
    assert losses == {
        "standard": ("cross_entropy_mix", True, 1.0, 0.0),
        "augmentation": ("cross_entropy_mix", True, 1.0, 0.0),
        "iit": ("interchange_intervention", True, 1.0, 0.0),
        "multitask": ("interchange_intervention", True, 0.0, 0.5),
        "iit_multitask": ("interchange_intervention", True, 1.0, 0.5),
        "untyped_iit": ("interchange_intervention", False, 1.0, 0.0),
    }


def test_the_arms_without_heads_keep_the_job_config_they_had_before_the_heads():
    experiment = load_config(CONFIG, [], model=ExperimentConfig)
    for arm, typed in (("iit", True), ("untyped_iit", False)):
        job = arm_job(experiment, arm, 0)
        before = job.model_copy(update={"train": job.train.model_copy(update={"objective": experiment.iit.model_copy(update={"typed": typed})})})
        assert "multitask_weight" not in job.train.objective.model_dump()  # left out at its default
        assert config_hash(job) == config_hash(before)
