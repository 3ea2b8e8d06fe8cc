"""DALI index files for WebDataset shards, in the format DALI's ``wds2idx`` writes (v1.2).

Line 1 is ``v1.2 <samples>``; then one line per sample listing, for each of its tar members in
archive order, ``<ext> <data offset> <size> <member name>``.
"""

import tarfile
from dataclasses import dataclass
from pathlib import Path

from shards.sample import split_member_name

INDEX_VERSION = "v1.2"


@dataclass(frozen=True)
class IndexMember:
    """One tar member as the index records it."""

    name: str
    offset: int
    size: int

    @property
    def key(self) -> str:
        return split_member_name(self.name)[0]

    @property
    def extension(self) -> str:
        return split_member_name(self.name)[1]


def group_by_sample(members: list[IndexMember]) -> list[list[IndexMember]]:
    """Group consecutive members sharing a key into samples, in archive order."""
    samples: list[list[IndexMember]] = []
    for member in members:
        if samples and samples[-1][0].key == member.key:
            samples[-1].append(member)
        else:
            samples.append([member])
    return samples


def format_index(samples: list[list[IndexMember]]) -> str:
    """Render an index file's text from members grouped by sample."""
    lines = [f"{INDEX_VERSION} {len(samples)}"]
    for sample in samples:
        lines.append(" ".join(f"{m.extension} {m.offset} {m.size} {m.name}" for m in sample))
    return "\n".join(lines) + "\n"


def members_of_tar(tar_path: Path) -> list[IndexMember]:
    """Read the regular-file members of a tar with their data offsets (raises tarfile.TarError)."""
    with tarfile.open(tar_path, mode="r:") as archive:
        return [
            IndexMember(member.name, member.offset_data, member.size)
            for member in archive
            if member.isreg()
        ]


def index_text_of_tar(tar_path: Path) -> str:
    """The index text ``wds2idx`` would write for ``tar_path``."""
    return format_index(group_by_sample(members_of_tar(tar_path)))
