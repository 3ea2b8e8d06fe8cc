"""Work units: a class and a range of seed indices, the smallest piece of generation that is resumed.

Unit ids go into the manifest; a unit is done when the manifest says so, so a restarted actor or
job skips done units and resumes a partial one after its committed samples.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkUnit:
    """Seeds [seed_start, seed_stop) of one class."""

    class_index: int
    seed_start: int
    seed_stop: int

    @property
    def unit_id(self) -> str:
        return f"c{self.class_index}-s{self.seed_start}-{self.seed_stop}"


def plan_units(classes: list[int], seeds_per_class: int, seeds_per_unit: int) -> list[WorkUnit]:
    """Every unit of a generation job, classes interleaved so early shards already cover all classes."""
    starts = range(0, seeds_per_class, seeds_per_unit)
    return [
        WorkUnit(class_index, start, min(start + seeds_per_unit, seeds_per_class))
        for start in starts
        for class_index in classes
    ]
