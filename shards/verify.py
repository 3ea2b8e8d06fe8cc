"""``genint shards verify``: check every manifest line against the files it names.

Per committed shard: the file exists, its size and sha256 match, it parses as a tar whose samples
follow the contract, its sample count and class counts match, and its DALI index equals the index
computed from the tar. Per stream: no duplicate keys across shards and no orphan shard or index
files. Temp files are reported as notes, not problems: a live writer always has one.
"""

import hashlib
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from shards.errors import ShardError
from shards.index import IndexMember, format_index, group_by_sample
from shards.manifest import MANIFEST_NAME, ManifestRecord, parse_line, read_complete_lines
from shards.reader import stream_dirs
from shards.sample import encode_sample
from shards.writer import TEMP_SUFFIX


@dataclass(frozen=True)
class Finding:
    """One line of verify's report."""

    path: Path
    message: str
    is_problem: bool = True

    def __str__(self) -> str:
        label = "" if self.is_problem else "note: "
        return f"{self.path}: {label}{self.message}"


def _sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _read_tar(path: Path) -> tuple[list[IndexMember], dict[str, dict[str, bytes]]]:
    """Members (with data offsets) and the fields of every sample, read with tarfile."""
    members: list[IndexMember] = []
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path, mode="r:") as archive:
        for member in archive:
            if not member.isreg():
                raise tarfile.TarError(f"member {member.name!r} is not a regular file")
            index_member = IndexMember(member.name, member.offset_data, member.size)
            members.append(index_member)
            data = archive.extractfile(member).read()
            samples.setdefault(index_member.key, {})[index_member.extension] = data
    return members, samples


def _check_shard(path: Path, record: ManifestRecord, seen_keys: dict[str, str]) -> list[Finding]:
    if not path.exists():
        return [Finding(path, "missing: listed in the manifest but not on disk")]
    findings = []
    size = path.stat().st_size
    if size != record.bytes:
        findings.append(Finding(path, f"size {size} bytes, manifest says {record.bytes}"))
    digest = _sha256_of(path)
    if digest != record.sha256:
        findings.append(Finding(path, f"sha256 {digest[:12]}..., manifest says {record.sha256[:12]}..."))
    try:
        members, samples = _read_tar(path)
    except (tarfile.TarError, OSError, EOFError) as error:
        return findings + [Finding(path, f"unreadable tar ({error})")]
    grouped = group_by_sample(members)
    if len(grouped) != len(samples):
        findings.append(Finding(path, "a key's members are not contiguous in the tar"))
    if len(samples) != record.samples:
        findings.append(Finding(path, f"{len(samples)} samples, manifest says {record.samples}"))
    class_counts: Counter[int] = Counter()
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
    if not findings and dict(class_counts) != record.class_counts:
        findings.append(Finding(path, f"class counts {dict(class_counts)}, manifest says {record.class_counts}"))
    index_path = path.with_suffix(".idx")
    if not index_path.exists():
        findings.append(Finding(index_path, "missing DALI index"))
    elif index_path.read_text() != format_index(grouped):
        findings.append(Finding(index_path, "DALI index does not match the tar"))
    return findings


def verify_stream(stream_dir: Path) -> tuple[list[Finding], list[ManifestRecord]]:
    """All findings for one stream directory, and the shard records its manifest lists."""
    manifest_path = stream_dir / MANIFEST_NAME
    lines, end = read_complete_lines(manifest_path, 0)
    findings = []
    if end != manifest_path.stat().st_size:
        findings.append(Finding(manifest_path, "last line is incomplete (no newline)"))
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(parse_line(line, f"{manifest_path}:{number}"))
        except ShardError as error:
            findings.append(Finding(manifest_path, str(error)))
    shard_records = [record for record in records if record.kind == "shard"]
    seen_keys: dict[str, str] = {}
    listed: set[str] = set()
    for record in shard_records:
        if record.name in listed:
            findings.append(Finding(manifest_path, f"shard {record.name} is listed twice"))
            continue
        listed.add(record.name)
        findings += _check_shard(stream_dir / record.name, record, seen_keys)
    listed |= {name.removesuffix(".tar") + ".idx" for name in listed}
    for path in sorted(stream_dir.iterdir()):
        if path.name.endswith(TEMP_SUFFIX):
            findings.append(Finding(path, "temp file of a live or crashed writer", is_problem=False))
        elif path.suffix in (".tar", ".idx") and path.name not in listed:
            findings.append(Finding(path, "orphan: not in the manifest"))
    return findings, shard_records


def verify_store(root: Path) -> tuple[list[Finding], dict[str, int]]:
    """Verify every stream under ``root``.

    Returns:
        The findings and totals (streams, shards, samples) of what the manifests list.
    """
    findings: list[Finding] = []
    totals = Counter()
    for stream_dir in stream_dirs(root):
        stream_findings, shard_records = verify_stream(stream_dir)
        findings += stream_findings
        totals["streams"] += 1
        totals["shards"] += len(shard_records)
        totals["samples"] += sum(record.samples for record in shard_records)
    return findings, dict(totals)
