"""``genint shards verify``: check every manifest line against the files it names.

Per committed shard: the file is a regular file in the stream directory, its size and sha256
match, it parses as a tar whose samples follow the contract, its sample count and class counts
match, and its DALI index equals the index computed from the tar (and has the line's index_sha256). Per stream: no duplicate keys
across shards and no orphan shard or index files. Temp files are reported as notes, not problems:
a live writer always has one. Every problem is one finding; verify itself only fails on a store
root it cannot read.
"""

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from shards.errors import ShardError, StoreFileError
from shards.files import TEMP_SUFFIX, open_regular, read_regular
from shards.index import IndexMember, format_index, group_by_sample
from shards.manifest import MANIFEST_NAME, ManifestRecord, parse_line, read_complete_lines
from shards.mirror import mirrored_store
from shards.names import index_file_name
from shards.reader import MIN_INDEX_LIMIT_BYTES, iter_members, stream_dirs
from shards.sample import encode_sample
from shards.locations import is_s3_url


@dataclass(frozen=True)
class Finding:
    """One line of verify's report."""

    path: Path | str
    message: str
    is_problem: bool = True

    def __str__(self) -> str:
        label = "" if self.is_problem else "note: "
        return f"{self.path}: {label}{self.message}"


def _read_tar(handle: BinaryIO, path: Path, max_member_bytes: int) -> tuple[list[IndexMember], dict[str, dict[str, bytes]]]:
    """Members (with data offsets) and the fields of every sample, read with tarfile."""
    members: list[IndexMember] = []
    samples: dict[str, dict[str, bytes]] = {}
    for member, data in iter_members(handle, path, max_member_bytes):
        index_member = IndexMember(member.name, member.offset_data, member.size)
        members.append(index_member)
        samples.setdefault(index_member.key, {})[index_member.extension] = data
    return members, samples


def _check_contents(
    handle: BinaryIO, path: Path, record: ManifestRecord, seen_keys: dict[str, str], findings: list[Finding]
) -> list[list[IndexMember]] | None:
    """Add the findings on an open shard's size, hash, samples and class counts to ``findings``.

    Returns:
        Its members grouped by sample, or None when the tar was not read (larger than committed).
    """
    size = os.fstat(handle.fileno()).st_size
    if size != record.bytes:
        findings.append(Finding(path, f"size {size} bytes, manifest says {record.bytes}"))
        if size > record.bytes:
            # Not hashed or parsed: whatever was appended is not what the manifest committed.
            return None
    else:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
        if digest != record.sha256:
            findings.append(Finding(path, f"sha256 {digest[:12]}..., manifest says {record.sha256[:12]}..."))
        handle.seek(0)
    # No member can be larger than the whole shard the manifest committed.
    members, samples = _read_tar(handle, path, max_member_bytes=record.bytes)
    grouped = group_by_sample(members)
    if len(grouped) != len(samples):
        findings.append(Finding(path, "a key's members are not contiguous in the tar"))
    if len(samples) != record.samples:
        findings.append(Finding(path, f"{len(samples)} samples, manifest says {record.samples}"))
    class_counts: Counter[int] = Counter()
    problems_before = len(findings)
    for key, fields in samples.items():
        try:
            encoded = encode_sample({"__key__": key, **fields})
        except ShardError as error:
            findings.append(Finding(path, str(error)))
            continue
        class_counts[int(encoded["cls"])] += 1
        if key in seen_keys:
            findings.append(Finding(path, f"duplicate key {key!r} (also in {seen_keys[key]})"))
        seen_keys[key] = path.name
    if len(findings) == problems_before and dict(class_counts) != record.class_counts:
        findings.append(Finding(path, f"class counts {dict(class_counts)}, manifest says {record.class_counts}"))
    return grouped


def _check_index(index_path: Path, grouped: list[list[IndexMember]], record: ManifestRecord) -> list[Finding]:
    if not os.path.lexists(index_path):
        return [Finding(index_path, "missing DALI index")]
    try:
        text = read_regular(index_path, "DALI index", max(record.bytes, MIN_INDEX_LIMIT_BYTES))
    except StoreFileError as error:
        return [Finding(error.path, error.problem)]
    if text != format_index(grouped).encode("utf-8"):
        return [Finding(index_path, "DALI index does not match the tar")]
    digest = hashlib.sha256(text).hexdigest()
    if record.index_sha256 is not None and digest != record.index_sha256:
        return [Finding(index_path, f"index sha256 {digest[:12]}..., manifest says {record.index_sha256[:12]}...")]
    return []


def _check_shard(path: Path, record: ManifestRecord, seen_keys: dict[str, str]) -> list[Finding]:
    if not os.path.lexists(path):
        return [Finding(path, "missing: listed in the manifest but not on disk")]
    findings: list[Finding] = []
    try:
        with open_regular(path, "shard") as handle:
            grouped = _check_contents(handle, path, record, seen_keys, findings)
    except StoreFileError as error:
        return findings + [Finding(error.path, error.problem)]
    except OSError as error:  # a read failing midway (an I/O error, a vanished mount)
        return findings + [Finding(path, f"shard cannot be read ({error.strerror})")]
    if grouped is None:
        return findings
    return findings + _check_index(path.with_name(index_file_name(path.name)), grouped, record)


def verify_stream(stream_dir: Path) -> tuple[list[Finding], list[ManifestRecord]]:
    """All findings for one stream directory, and the shard records its manifest lists."""
    manifest_path = stream_dir / MANIFEST_NAME
    try:
        lines, end = read_complete_lines(manifest_path, 0)
    except StoreFileError as error:
        return [Finding(error.path, error.problem)], []
    findings = []
    if end != manifest_path.stat().st_size:
        findings.append(Finding(manifest_path, "last line is incomplete (no newline)"))
    records = []
    for number, line in enumerate(lines, 1):
        where = f"{manifest_path}:{number}"
        try:
            records.append(parse_line(line, where))
        except ShardError as error:
            findings.append(Finding(where, str(error).removeprefix(f"{where}: ")))
    shard_records = [record for record in records if record.kind == "shard"]
    seen_keys: dict[str, str] = {}
    listed: set[str] = set()
    for record in shard_records:
        if record.name in listed:
            findings.append(Finding(manifest_path, f"shard {record.name} is listed twice"))
            continue
        listed.add(record.name)
        findings += _check_shard(stream_dir / record.name, record, seen_keys)
    listed |= {index_file_name(name) for name in listed}
    try:
        entries = sorted(stream_dir.iterdir())
    except OSError as error:
        return findings + [Finding(stream_dir, f"cannot list the stream directory ({error.strerror})")], shard_records
    for path in entries:
        if path.name.endswith(TEMP_SUFFIX):
            findings.append(Finding(path, "temp file of a live or crashed writer", is_problem=False))
        elif path.suffix in (".tar", ".idx") and path.name not in listed:
            findings.append(Finding(path, "orphan: not in the manifest"))
    return findings, shard_records


def verify_store(root: "Path | str") -> tuple[list[Finding], dict[str, int]]:
    """Verify every stream under ``root`` (a directory, or an ``s3://`` store checked on a temp copy).

    Returns:
        The findings and totals (streams, shards, samples) of what the manifests list.
    """
    if is_s3_url(root):
        with mirrored_store(root) as copy:
            findings, totals = _verify_local_store(copy.root)
            return [Finding(copy.to_url(finding.path), finding.message, finding.is_problem) for finding in findings], totals
    return _verify_local_store(root)


def _verify_local_store(root: Path) -> tuple[list[Finding], dict[str, int]]:
    findings: list[Finding] = []
    totals = Counter()
    for stream_dir in stream_dirs(root):
        stream_findings, shard_records = verify_stream(stream_dir)
        findings += stream_findings
        totals["streams"] += 1
        totals["shards"] += len(shard_records)
        totals["samples"] += sum(record.samples for record in shard_records)
    return findings, dict(totals)
