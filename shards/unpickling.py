"""Why ``torch.load(weights_only=True)`` refused a file, in a few words.

Weights, checkpoints and everything else genint reads with torch are data, never code: torch's
weights-only unpickler refuses any pickled Python object, with a paragraph of advice. Trainers and
datagen both turn that refusal into one line; this is the one place that reads torch's message.
(No torch import here: only its message is parsed.)
"""

import pickle
import re

# The class or function a refused pickle names ("GLOBAL posix.system").
_PICKLED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def refusal_reason(error: Exception, not_loadable: str) -> str:
    """The reason ``torch.load(weights_only=True)`` raised ``error``.

    Args:
        error: what torch raised.
        not_loadable: the wording for a file that holds no loadable torch data, with ``{}`` for
            torch's first line, e.g. ``"not a loadable state_dict: {}"``.
    Returns:
        "it pickles Python objects (NAME), refused unloaded ..." for a pickle naming an object (a
        class, or a function such as ``os.system``), else ``not_loadable`` filled in.
    """
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) and text.startswith("Weights only load failed"):
        named = _PICKLED_GLOBAL.search(text)
        if named:
            return f"it pickles Python objects ({named.group(1)}), refused unloaded: weights are read as data, never as code"
        lines = [line.split("WeightsUnpickler error:")[-1].strip() for line in text.splitlines()[1:]]
        first = next((line for line in lines if line and not line.startswith("Check the documentation")), "refused")
    else:
        first = f"{type(error).__name__}: {text.strip().splitlines()[0]}" if text.strip() else type(error).__name__
    return not_loadable.format(first[:160])
