"""The sample contract: what one WebDataset sample in a genint shard may contain.

A sample is a dict with ``__key__`` (no dots, no slashes), exactly one image field (``jpg`` or
``png``, encoded bytes), ``cls`` (class index, written as ASCII decimal) and ``json`` (the
provenance record, a JSON object). A counterfactual-pair sample also carries its partner: one
image field ``cf.jpg`` or ``cf.png`` and its class ``cf.cls``, which differs from ``cls``; the
partner's members follow the sample's in the same tar, so they are committed with it. Nothing
else is accepted, so no pickle can ever reach a shard.
"""

import json
import re
from typing import Any

from shards.errors import SampleError

IMAGE_EXTENSIONS = ("jpg", "png")
# A pair sample's partner: the same fields under "cf." (WebDataset and DALI split a member's name at its
# first dot, so "key.cf.png" is the field "cf.png" of sample "key").
def partner_field(field: str) -> str:
    """The name of a partner's field: ``cf.`` and the sample's field of the same kind (``png``, ``cls``)."""
    return f"cf.{field}"


PARTNER_IMAGE_EXTENSIONS = tuple(partner_field(ext) for ext in IMAGE_EXTENSIONS)
PARTNER_CLASS = partner_field("cls")
ALLOWED_FIELDS = frozenset({"__key__", "cls", "json", *IMAGE_EXTENSIONS, *PARTNER_IMAGE_EXTENSIONS, PARTNER_CLASS})
# 90 characters keeps "key.json" under USTAR's 100-byte name limit, so every tar member has
# exactly one 512-byte header (the index writer relies on that).
MAX_KEY_CHARS = 90
KEY_CHARACTERS = "A-Za-z0-9_-"  # a regular-expression character class
_KEY_PATTERN = re.compile(rf"^[{KEY_CHARACTERS}]+$")
# A class index has far fewer digits; a longer cls is damage (and Python refuses int() of > 4300 digits).
MAX_CLASS_DIGITS = 18
_IMAGE_MAGIC = {"jpg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}


def check_key(key: Any) -> str:
    """Return ``key`` if it is a valid sample key, else raise SampleError."""
    if not isinstance(key, str) or not _KEY_PATTERN.match(key) or len(key) > MAX_KEY_CHARS:
        raise SampleError(
            f"sample key {key!r} is invalid: use 1-{MAX_KEY_CHARS} characters from "
            "[A-Za-z0-9_-] (no dots, no slashes)"
        )
    return key


def check_fields(key: str, names: list[str]) -> str:
    """Check a sample's field names against the contract (``__key__`` may be among them).

    Returns:
        The image field's name (``jpg`` or ``png``).

    Raises:
        SampleError: for a field the contract does not allow, a repeated field, no image or two
            images, or a missing ``cls`` or ``json``.
    """
    unknown = sorted(set(names) - ALLOWED_FIELDS)
    if unknown:
        raise SampleError(
            f"sample {key}: fields {unknown} are not allowed (allowed: {sorted(ALLOWED_FIELDS)})"
        )
    if len(set(names)) != len(names):
        raise SampleError(f"sample {key}: a field appears more than once ({sorted(names)})")
    images = [ext for ext in IMAGE_EXTENSIONS if ext in names]
    if len(images) != 1:
        raise SampleError(f"sample {key}: needs exactly one image field of {IMAGE_EXTENSIONS} (got {images})")
    for required in ("cls", "json"):
        if required not in names:
            raise SampleError(f"sample {key}: missing required field {required!r}")
    partner_images = [ext for ext in PARTNER_IMAGE_EXTENSIONS if ext in names]
    if len(partner_images) > 1 or bool(partner_images) != (PARTNER_CLASS in names):
        raise SampleError(f"sample {key}: a counterfactual partner is one image field of {PARTNER_IMAGE_EXTENSIONS} "
                          f"and {PARTNER_CLASS!r} (got {sorted(set(names) & {*PARTNER_IMAGE_EXTENSIONS, PARTNER_CLASS})})")
    return images[0]


def encode_class(value: Any, key: str) -> bytes:
    """Encode a class index as ASCII decimal bytes (the WebDataset ``cls`` convention)."""
    if isinstance(value, bytes):
        text = value.decode("ascii", errors="replace")
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        raise SampleError(f"sample {key}: cls must be an int or ASCII decimal bytes (got {value!r})")
    if not text.isdigit() or not text.isascii():
        raise SampleError(f"sample {key}: cls must be a non-negative decimal integer (got {value!r})")
    return str(int(text)).encode("ascii")


def decode_class(raw: bytes, key: str) -> int:
    """The class index of a ``cls`` field: ASCII decimal, surrounding whitespace allowed (as WebDataset reads it).

    Args:
        raw: the field's bytes.
        key: the sample, for the message.

    Raises:
        SampleError: naming the key, when the field is not a non-negative decimal integer of at
            most ``MAX_CLASS_DIGITS`` digits.
    """
    text = raw.decode("ascii", errors="replace").strip()
    if not (text.isascii() and text.isdecimal()) or len(text) > MAX_CLASS_DIGITS:
        raise SampleError(f"sample {key}: cls must be a non-negative decimal integer of at most "
                          f"{MAX_CLASS_DIGITS} digits (got {text[:MAX_CLASS_DIGITS + 2]!r})")
    return int(text)


def encode_provenance(value: Any, key: str) -> bytes:
    """Encode the provenance record as UTF-8 JSON; it must be a JSON object."""
    if isinstance(value, (bytes, str)):
        try:
            value = json.loads(value)
        except ValueError as error:
            raise SampleError(f"sample {key}: json field is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise SampleError(f"sample {key}: json must be a JSON object (got {type(value).__name__})")
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def encode_sample(sample: dict[str, Any]) -> dict[str, bytes | str]:
    """Check ``sample`` against the contract and return it with every field as bytes.

    Args:
        sample: ``__key__``, one of ``jpg``/``png`` (bytes), ``cls`` (int or bytes), ``json``
            (dict, str or bytes); for a pair also one of ``cf.jpg``/``cf.png`` and ``cf.cls``.

    Returns:
        A dict ready for ``webdataset.TarWriter(encoder=False)``.

    Raises:
        SampleError: naming the key and the broken rule.
    """
    key = check_key(sample.get("__key__"))
    ext = check_fields(key, list(sample))
    encoded = {
        "__key__": key,
        ext: _encoded_image(sample[ext], ext, key),
        "cls": encode_class(sample["cls"], key),
        "json": encode_provenance(sample["json"], key),
    }
    partner = next((field for field in PARTNER_IMAGE_EXTENSIONS if field in sample), None)
    if partner is not None:
        encoded[partner] = _encoded_image(sample[partner], partner, key)
        encoded[PARTNER_CLASS] = encode_class(sample[PARTNER_CLASS], key)
        if encoded[PARTNER_CLASS] == encoded["cls"]:
            raise SampleError(f"sample {key}: its counterfactual partner has the sample's own class "
                              f"{encoded['cls'].decode()}; a pair's classes must differ")
    return encoded


def _encoded_image(image: Any, field: str, key: str) -> bytes:
    """The bytes of an image field, once they start like the encoding its extension names."""
    ext = field.rpartition(".")[2]
    if not isinstance(image, (bytes, bytearray, memoryview)) or not bytes(image[:8]).startswith(_IMAGE_MAGIC[ext]):
        raise SampleError(f"sample {key}: {field} field is not encoded {ext.upper()} bytes")
    return bytes(image)


def split_member_name(name: str) -> tuple[str, str]:
    """Split a tar member name into (key, extension) at the first dot, as WebDataset and DALI do."""
    key, _, ext = name.partition(".")
    return key, ext
