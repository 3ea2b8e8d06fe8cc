"""The reader checks of one DALI index in bulk, for indexes in the form genint's writer makes.

A reader's start checks every index line of every shard of a stream (``shards.reader``): a
million samples for 10,000 shards of 100. Parsing each line into members costs microseconds per
sample in Python; this module checks whole columns at once instead (C-level splits, list
comparisons, one regular expression over all keys, numpy over the offsets), about ten times
faster, for the *canonical* form: single spaces between fields, one newline per line, and every
sample with the same fields in the same order.

``canonical_index_keys`` only ever says "passes" or "cannot tell": an index that is not
canonical, or that fails a check, gets None, and the caller runs the detailed per-line check,
which decides and names the line at fault. So whatever passes here passes the detailed check too
(tests/test_canonical_index.py checks that on mutated indexes).
"""

import re
import tarfile

import numpy as np

from shards.errors import SampleError
from shards.index import INDEX_VERSION
from shards.sample import KEY_CHARACTERS, MAX_KEY_CHARS, check_fields

# The ASCII whitespace that ``str.split()`` splits on besides the space and the newline.
_OTHER_WHITESPACE = b"\t\r\x0b\x0c\x1c\x1d\x1e\x1f"
# Every key of an index at once, separated by spaces.
_KEY_LINES = re.compile(rf"[{KEY_CHARACTERS}]{{1,{MAX_KEY_CHARS}}}(?: [{KEY_CHARACTERS}]{{1,{MAX_KEY_CHARS}}})*")
# A column of offsets or sizes; at most 18 digits each keeps them inside int64 (a tar of 10^18
# bytes would be needed for more).
_NUMBERS = re.compile(r"[0-9]{1,18}(?: [0-9]{1,18})*")
# The key of each line after the header in the writer's form (the first member's name up to its
# extension), the rest of the line consumed so that the search resumes at the next line.
_LINE_KEYS = re.compile(r"\n[^ ]+ [^ ]+ [^ ]+ ([^.]+)\.[^\n]*")


def written_index_keys(data: bytes, samples: int) -> list[str] | None:
    """The sample keys of an index known to be the one genint's writer wrote (its sha256 is the
    manifest line's ``index_sha256``), without re-checking what the writer checked; None if the
    index does not list ``samples`` samples in the writer's form after all.
    """
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not text.startswith(f"{INDEX_VERSION} {samples}\n"):
        return None
    keys = _LINE_KEYS.findall(text)
    return keys if len(keys) == samples else None


def canonical_index_keys(data: bytes, samples: int, tar_bytes: int) -> list[str] | None:
    """The sample keys of an index in canonical form that passes every reader check, else None.

    The checks are the detailed ones' (``shards.reader.check_shard``): the header lists
    ``samples`` samples; each line's members share a key that follows the sample contract, have
    the contract's fields and are listed under their own extension; every member lies inside the
    ``tar_bytes``-byte tar, after the first header block.

    Args:
        data: the index file's bytes.
    """
    if not data.isascii() or len(data.translate(None, _OTHER_WHITESPACE)) != len(data):
        return None
    header, _, body = data.decode("ascii").partition("\n")
    if header != f"{INDEX_VERSION} {samples}":
        return None
    if samples == 0:
        return [] if not body else None
    tokens = body.split()
    newlines = body.count("\n")
    # Only spaces and newlines are left, so one separator between every two tokens and one
    # after the last (no leading, doubled or missing one) makes as many tokens as separators.
    if not body.endswith("\n") or len(tokens) != body.count(" ") + newlines or len(tokens) % samples:
        return None
    fields_per_line = len(tokens) // samples
    if fields_per_line % 4:
        return None
    extensions = tokens[0:fields_per_line:4]
    try:
        check_fields("", extensions)
    except SampleError:
        return None
    if any(tokens[4 * member :: fields_per_line].count(extension) != samples for member, extension in enumerate(extensions)):
        return None
    keys = _keys(tokens, extensions, fields_per_line)
    # With the names checked, only the last member of each sample ends in its extension, so this
    # many of them before a newline, and no other newline, puts every sample on a line of its own.
    last_name_ends = f".{extensions[-1]}\n"
    if keys is None or body.count(last_name_ends) != samples or newlines != samples:
        return None
    if not _numbers_inside(tokens[1::4], tokens[2::4], tar_bytes):
        return None
    return keys


def _keys(tokens: list[str], extensions: list[str], fields_per_line: int) -> list[str] | None:
    """Each line's key, if every member's name is that key, a dot and the member's extension.

    Whole columns are compared as joined strings: a key has no dot, so dropping the first
    member's ``.<extension>`` from its column leaves the keys, and rebuilding each column from
    them must give it back exactly.
    """
    first_names = " ".join(tokens[3::fields_per_line])
    keys_text = first_names.replace("." + extensions[0], "")
    if not _KEY_LINES.fullmatch(keys_text):
        return None
    keys = keys_text.split(" ")
    for member, extension in enumerate(extensions):
        suffix = "." + extension
        if (suffix + " ").join(keys) + suffix != " ".join(tokens[4 * member + 3 :: fields_per_line]):
            return None
    return keys


def _numbers_inside(offsets: list[str], sizes: list[str], tar_bytes: int) -> bool:
    """Whether the members' offsets and sizes are decimal numbers placing each inside the tar."""
    columns = [" ".join(offsets), " ".join(sizes)]
    if not all(_NUMBERS.fullmatch(column) for column in columns):
        return False
    starts, lengths = (np.fromstring(column, dtype=np.int64, sep=" ") for column in columns)
    return bool(starts.min() >= tarfile.BLOCKSIZE and (starts + lengths).max() <= tar_bytes)
