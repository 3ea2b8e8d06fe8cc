"""DALI index files for WebDataset shards, in the format DALI's ``wds2idx`` writes (v1.2).

Line 1 is ``v1.2 <samples>``; then one line per sample listing, for each of its tar members in
archive order, ``<ext> <data offset> <size> <member name>``.
"""

from dataclasses import dataclass

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
