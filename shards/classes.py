"""Class indices for ImageFolder trees: ImageNet order for wnid folders, sorted order otherwise."""

import csv
from functools import cache
from importlib import resources


@cache
def imagenet_wnid_indices() -> dict[str, int]:
    """ImageNet-1k wnid -> class index, from the class list shipped with the package."""
    with resources.files("shards").joinpath("data/imagenet_classes.tsv").open() as handle:
        return {row["wnid"]: int(row["index"]) for row in csv.DictReader(handle, delimiter="\t")}


def class_indices(folder_names: list[str]) -> dict[str, int]:
    """Map class folder names to indices.

    ImageNet indices when every folder is an ImageNet wnid (so a subset keeps its true labels),
    otherwise the position in sorted order (torchvision's ImageFolder convention).
    """
    wnids = imagenet_wnid_indices()
    if folder_names and all(name in wnids for name in folder_names):
        return {name: wnids[name] for name in folder_names}
    return {name: index for index, name in enumerate(sorted(folder_names))}
