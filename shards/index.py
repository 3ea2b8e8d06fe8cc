"""DALI index files for WebDataset shards, in the format DALI's ``wds2idx`` writes (v1.2).

Line 1 is ``v1.2 <samples>``; then one line per sample listing, for each of its tar members in
archive order, ``<ext> <data offset> <size> <member name>``.
"""

from dataclasses import dataclass, field

from shards.errors import ShardError
from shards.sample import IMAGE_EXTENSIONS, split_member_name

INDEX_VERSION = "v1.2"


@dataclass(slots=True)
class IndexMember:
    """One tar member as the index records it (read-only by convention).

    ``key`` and ``extension`` are split from the name once: a reader's start checks every member of
    every shard of a stream, millions of them, each asked for both more than once. Not frozen:
    a frozen dataclass's constructor costs three times as much, and nothing changes a member.
    """

    name: str
    offset: int
    size: int
    key: str = field(init=False, repr=False, compare=False)
    extension: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.key, self.extension = split_member_name(self.name)


def group_by_sample(members: list[IndexMember]) -> list[list[IndexMember]]:
    """Group consecutive members sharing a key into samples, in archive order."""
    samples: list[list[IndexMember]] = []
    for member in members:
        if samples and samples[-1][0].key == member.key:
            samples[-1].append(member)
        else:
            samples.append([member])
    return samples


def image_and_class(members: list[IndexMember]) -> tuple[IndexMember, IndexMember]:
    """The image member (``jpg`` or ``png``) and the ``cls`` member of one sample.

    Args:
        members: one sample's members from an index that passed the reader checks
            (``shards.reader.check_shard``), so both are there.
    """
    by_extension = {member.extension: member for member in members}
    image = next(by_extension[extension] for extension in IMAGE_EXTENSIONS if extension in by_extension)
    return image, by_extension["cls"]


def format_index(samples: list[list[IndexMember]]) -> str:
    """Render an index file's text from members grouped by sample."""
    lines = [f"{INDEX_VERSION} {len(samples)}"]
    for sample in samples:
        lines.append(" ".join(f"{m.extension} {m.offset} {m.size} {m.name}" for m in sample))
    return "\n".join(lines) + "\n"


def parse_index(text: str, where: str) -> list[list[IndexMember]]:
    """Members grouped by sample from an index file's text (the inverse of ``format_index``).

    Args:
        text: the file's content.
        where: the file, for messages.

    Raises:
        ShardError: naming ``where`` and the line that is not in the index format.
    """
    lines = text.splitlines()
    header = lines[0].split() if lines else []
    if len(header) != 2 or header[0] != INDEX_VERSION or not header[1].isdecimal():
        raise ShardError(f"{where}: not a DALI index (first line must be '{INDEX_VERSION} <samples>')")
    if int(header[1]) != len(lines) - 1:
        raise ShardError(f"{where}: header says {header[1]} samples, the index lists {len(lines) - 1}")
    samples = []
    for number, line in enumerate(lines[1:], 2):
        parts = line.split()
        if not parts or len(parts) % 4:
            raise ShardError(f"{where}:{number}: not an index line ('<ext> <offset> <size> <member name>' per member)")
        members = []
        fields = iter(parts)
        for extension, offset, size, name in zip(fields, fields, fields, fields):  # four at a time
            if not (offset.isdecimal() and size.isdecimal()):
                raise ShardError(f"{where}:{number}: member offsets and sizes must be decimal numbers")
            member = IndexMember(name, int(offset), int(size))
            if member.extension != extension:
                raise ShardError(f"{where}:{number}: member {name!r} is listed as {extension!r}")
            members.append(member)
        samples.append(members)
    return samples
