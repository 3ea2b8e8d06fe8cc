"""DeepSpeed's checkpoint engine made to load checkpoints as data (``torch.load(weights_only=True)``).

DeepSpeed 0.19's ``TorchCheckpointEngine.load`` calls ``torch.load(..., weights_only=False)``: a
planted pickle in any file it loads on resume would run. ``engine.load_checkpoint`` reads every file
through ``engine.checkpoint_engine``, so genint swaps that for a subclass whose ``load`` unpickles
only tensors, containers and the few DeepSpeed types listed below. Import this module only after
``deepspeed`` (DS_ACCELERATOR must be set first).
"""

from pathlib import Path

from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine
from deepspeed.runtime.fp16.loss_scaler import LossScaler
from deepspeed.runtime.zero.config import ZeroStageEnum
from deepspeed.utils.tensor_fragment import fragment_address

from trainers.errors import TrainError
from trainers.torch_files import load_plain

# Everything besides tensors and containers that DeepSpeed pickles into genint's checkpoints (ZeRO 1's
# optimizer state: its stage, loss scaler and parameter slice addresses), found with
# torch.serialization.get_unsafe_globals_in_checkpoint on each file a save writes. genint's own
# client state is plain data (see trainers.checkpoint.rng_state).
DEEPSPEED_CHECKPOINT_GLOBALS = (LossScaler, ZeroStageEnum, fragment_address)


class WeightsOnlyCheckpointEngine(TorchCheckpointEngine):
    """``TorchCheckpointEngine`` whose ``load`` never runs pickled code (a refused file is a TrainError)."""

    def load(self, path: str, map_location=None):
        return load_plain(Path(path), "checkpoint", DEEPSPEED_CHECKPOINT_GLOBALS, map_location)


def load_checkpoints_as_data(engine) -> None:
    """Make ``engine.load_checkpoint`` read every file with ``weights_only=True``.

    Raises:
        TrainError: the DeepSpeed config chose a checkpoint path that loads with ``weights_only=False``
            and cannot be swapped (another checkpoint writer, or universal checkpoints).
    """
    if type(engine.checkpoint_engine) is not TorchCheckpointEngine:
        raise TrainError(
            f"train.deepspeed.checkpoint: genint loads checkpoints only through DeepSpeed's torch checkpoint engine "
            f"(the config chose {type(engine.checkpoint_engine).__name__}); remove the checkpoint writer settings"
        )
    if engine.load_universal_checkpoint():
        raise TrainError("train.deepspeed.checkpoint.load_universal: not supported (DeepSpeed unpickles universal checkpoints unchecked)")
    # The same config as DeepSpeed's own instance (serialization format); only loading differs.
    engine.checkpoint_engine = WeightsOnlyCheckpointEngine(engine._config)
