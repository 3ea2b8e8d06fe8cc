"""Generator fidelity, measured on generated images alone through the benchmark's declared nuisance.

A benchmark declares its nuisance (Colored Digits: the background colour; the CGN benchmarks: the
stroke colour or texture): how to read it from an image, the values each class wears in training,
and how far a reading may lie from a value and still be that value. Per generated stream:

- new share: images whose reading is further than the tolerance from every training value;
- class match: class-c images whose reading is nearest one of class c's training values.

An observational generator that captured the training joint makes few new values and keeps each
class's own; interventions are meant to make new ones. No test image is involved.
Distances are the largest per-component difference (so a tolerance is in the reading's own units).
"""

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pydantic import BaseModel


class Nuisance(Protocol):
    """What a benchmark declares about its nuisance factor."""

    name: str  # e.g. "background colour", for the report
    tolerance: float  # a reading further than this from every training value is new

    def read(self, images: np.ndarray) -> np.ndarray:
        """The nuisance of each image: (N, 3, S, S) in [0, 1] -> (N, D)."""
        ...

    def training_values(self) -> list[np.ndarray]:
        """Per class c, the values its training images wear, (K_c, D)."""
        ...


@dataclass(frozen=True)
class FidelityGoal:
    """What a stream's measures should be; None leaves a measure without a goal."""

    max_new_share: float | None = None
    min_new_share: float | None = None
    min_class_match: float | None = None

    def describe(self) -> str:
        parts = [(self.max_new_share, "<= {:.0f} % new"), (self.min_new_share, ">= {:.0f} % new"),
                 (self.min_class_match, ">= {:.0f} % class match")]
        return ", ".join(text.format(100 * bound) for bound, text in parts if bound is not None)

    def met(self, new_share: float, class_match: float) -> bool:
        return ((self.max_new_share is None or new_share <= self.max_new_share)
                and (self.min_new_share is None or new_share >= self.min_new_share)
                and (self.min_class_match is None or class_match >= self.min_class_match))


class StreamFidelity(BaseModel):
    """One stream's measures and, where it has one, its goal and whether the measures meet it."""

    stream: str
    images: int
    new_share: float
    class_match: float
    goal: str  # "" when the stream has no goal
    goal_met: bool | None


def new_and_matching(readings: np.ndarray, labels: np.ndarray, class_values: list[np.ndarray], tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Per image: is its reading new (beyond ``tolerance`` of every training value), and is the nearest
    training value one of its own class's (ties count as a match)?

    Args:
        readings: (N, D). labels: (N,) class indices into ``class_values``. class_values: per class, (K_c, D).
    Returns:
        Two boolean arrays (N,).
    """
    per_class = np.stack([np.abs(readings[:, None, :] - values[None]).max(axis=2).min(axis=1) for values in class_values], axis=1)
    nearest = per_class.min(axis=1)
    own = per_class[np.arange(len(readings)), labels]
    return nearest > tolerance, own <= nearest


def stream_fidelity(stream: str, images: np.ndarray, labels: np.ndarray, nuisance: Nuisance, goal: FidelityGoal | None) -> StreamFidelity:
    """The measures of one stream's images (N, 3, S, S) in [0, 1] with labels (N,)."""
    new, matching = new_and_matching(nuisance.read(images), labels, nuisance.training_values(), nuisance.tolerance)
    new_share, class_match = float(new.mean()), float(matching.mean())
    return StreamFidelity(stream=stream, images=len(images), new_share=new_share, class_match=class_match,
                          goal=goal.describe() if goal else "", goal_met=goal.met(new_share, class_match) if goal else None)


FIDELITY_HEADER = ["stream", "images", "new {name}s", "class match", "goal", "met"]


def fidelity_rows(streams: list[StreamFidelity]) -> list[list[str]]:
    """Table rows (``FIDELITY_HEADER``) of the streams' measures."""
    met = {True: "yes", False: "NO", None: "-"}
    return [[stream.stream, str(stream.images), f"{100 * stream.new_share:.1f} %", f"{100 * stream.class_match:.1f} %",
             stream.goal or "-", met[stream.goal_met]] for stream in streams]


def fidelity_header(nuisance_name: str) -> list[str]:
    return [column.format(name=nuisance_name) for column in FIDELITY_HEADER]
