"""Where a network's high-level variables live (``train.objective.alignment_*``): a module's output
and one site per variable. No torch here, so validating a config does not load it."""

from collections.abc import Sequence
from dataclasses import dataclass

from trainers.errors import TrainError

Index = tuple[slice, ...]


@dataclass(frozen=True)
class Alignment:
    """Where the high-level variables live: a module's output and one site per variable.

    ``sites`` is either a list of per-dimension ``(start, stop)`` ranges (one list per variable)
    or the word ``quadrants``: a (C, H, W) output cut into its top-left, top-right, bottom-left
    and bottom-right quarters, all channels (the seed's MNIST-PVR alignment).
    """

    module: str
    sites: str | tuple[tuple[tuple[int, int], ...], ...]

    @property
    def site_count(self) -> int:
        return 4 if self.sites == "quadrants" else len(self.sites)

    def indices(self, row_shape: Sequence[int]) -> list[Index]:
        """The sites as index tuples into one row of an output of shape ``row_shape``."""
        if self.sites == "quadrants":
            if len(row_shape) != 3:
                raise TrainError(f"alignment quadrants needs a (C, H, W) output at {self.module}, got shape {tuple(row_shape)}")
            h, w = row_shape[1] // 2, row_shape[2] // 2
            halves_h, halves_w = (slice(0, h), slice(h, 2 * h)), (slice(0, w), slice(w, 2 * w))
            return [(slice(None), rows, columns) for rows in halves_h for columns in halves_w]
        if len({tuple(b - a for a, b in site) for site in self.sites}) > 1:
            raise TrainError(f"alignment sites at {self.module} must all have one shape (a source's site is written into any base site)")
        indices = []
        for site in self.sites:
            if len(site) > len(row_shape) or any(not 0 <= a < b <= n for (a, b), n in zip(site, row_shape)):
                raise TrainError(f"alignment site {list(map(list, site))} does not fit the output of {self.module} (shape {tuple(row_shape)})")
            indices.append(tuple(slice(a, b) for a, b in site))
        return indices
