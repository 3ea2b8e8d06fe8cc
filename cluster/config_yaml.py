"""YAML for configs and ``--set`` values, read within bounds a hostile file cannot get past.

A config is small and shallow. Without bounds a 50 MB file takes minutes in the pure-Python
parser, a "billion laughs" alias bomb stays tiny while it is parsed and expands only later (when
the free-form ``train.deepspeed`` section is validated, dumped and hashed), deep nesting ends in a
RecursionError, and a repeated key silently overwrites the first. So a config file is at most
``MAX_CONFIG_BYTES``, nested at most ``MAX_NESTING`` levels and at most ``MAX_VALUES`` values once
every alias is expanded (both checked on the parser's events, before any node is built), and a
mapping never repeats a key. libyaml's parser is used where PyYAML was built with it.
"""

from pathlib import Path
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    ScalarEvent,
)

from cluster.errors import ConfigError

MAX_CONFIG_BYTES = 2**20
MAX_NESTING = 50
MAX_VALUES = 100_000
MAX_ECHO_CHARS = 80
_MERGE_TAG = "tag:yaml.org,2002:merge"


def shorten(text: object, max_chars: int = MAX_ECHO_CHARS) -> str:
    """``text`` cut to ``max_chars`` characters (then ``...``): an error line echoes a value, never swallows it."""
    text = str(text)
    return text if len(text) <= max_chars else text[:max_chars] + "..."


def echo(value: object) -> str:
    """``value`` as an error line quotes it: its repr, a long string or list cut short."""
    return repr(shorten(value)) if isinstance(value, str) else shorten(repr(value))


class ConfigLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """The safe loader (libyaml's when present) refusing a key repeated within one mapping.

    Only the constructor is Python in libyaml's loader, so the duplicate check lives here; the
    size, nesting and alias bounds are checked on the events before (see ``_check_shape``).
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:  # `<<: *base` may be overridden by the keys beside it, on purpose
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first_line = first_lines.get(key)
            except TypeError:  # an unhashable key: the base class says so
                continue
            if first_line is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {echo(key)}, first on line {first_line}", key_node.start_mark)
            first_lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _refuse(source: str, numbered: bool, event: yaml.Event, problem: str) -> ConfigError:
    where = f"{source}:{event.start_mark.line + 1}" if numbered else source
    return ConfigError(f"{where}: {problem}")


def _check_shape(text: str, source: str, numbered: bool) -> None:
    """Refuse nesting deeper than MAX_NESTING or more than MAX_VALUES values, aliases expanded.

    One pass over the parser's events (the parser itself is iterative), keeping for every anchor
    how many values and levels its node brings each time an alias repeats it.
    """
    loader = ConfigLoader(text)
    anchored: dict[str, tuple[int, int]] = {}  # anchor -> (values, levels) of its node
    open_collections: list[list] = []  # [anchor, values before it, deepest child's levels]
    values = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            levels = 0
            if isinstance(event, CollectionStartEvent):
                if len(open_collections) >= MAX_NESTING:
                    raise _refuse(source, numbered, event, f"nested deeper than {MAX_NESTING} levels")
                open_collections.append([event.anchor, values, 0])
                values += 1
                continue
            if isinstance(event, CollectionEndEvent):
                anchor, values_before, deepest = open_collections.pop()
                levels = deepest + 1
                if anchor is not None:
                    anchored[anchor] = (values - values_before, levels)
            elif isinstance(event, ScalarEvent):
                values += 1
                if event.anchor is not None:
                    anchored[event.anchor] = (1, 0)
            elif isinstance(event, AliasEvent):
                if any(frame[0] == event.anchor for frame in open_collections):
                    raise _refuse(source, numbered, event, f"alias *{shorten(event.anchor)} refers to a node that contains it")
                alias_values, levels = anchored.get(event.anchor, (1, 0))  # an unknown anchor: the composer says so
                if len(open_collections) + levels > MAX_NESTING:
                    raise _refuse(source, numbered, event, f"nested deeper than {MAX_NESTING} levels once alias "
                                  f"*{shorten(event.anchor)} is expanded")
                values += alias_values
            else:
                continue
            if values > MAX_VALUES:
                raise _refuse(source, numbered, event, f"more than {MAX_VALUES} values (keys and values, "
                              "each use of an alias counting its whole node)")
            if open_collections:
                open_collections[-1][2] = max(open_collections[-1][2], levels)
    finally:
        loader.dispose()


def _yaml_error(error: yaml.YAMLError, source: str, numbered: bool) -> ConfigError:
    mark = getattr(error, "problem_mark", None)
    where = f"{source}:{mark.line + 1}" if mark is not None and numbered else source
    if isinstance(error, yaml.reader.ReaderError):
        problem = f"character #x{error.character:04x} at offset {error.position}: {error.reason}" \
            if isinstance(error.character, int) else error.reason
    else:
        problem = getattr(error, "problem", None) or error
    return ConfigError(f"{where}: invalid YAML ({shorten(problem, 200)})")


def parse_yaml(text: str, source: str, numbered: bool = True) -> Any:
    """One YAML document within the bounds above.

    Args:
        text: the document.
        source: how errors name it (a file path, or ``--set 'a.b=...'``).
        numbered: whether errors add ``:LINE`` to ``source`` (a ``--set`` value has one line).

    Raises:
        ConfigError: invalid YAML, a repeated key, or past a bound; one line naming source and line.
    """
    try:
        _check_shape(text, source, numbered)
        return yaml.load(text, Loader=ConfigLoader)
    except yaml.YAMLError as error:
        raise _yaml_error(error, source, numbered) from None


def read_config_file(path: Path) -> Any:
    """The YAML document in ``path``, a regular UTF-8 file of at most MAX_CONFIG_BYTES.

    Raises:
        ConfigError: missing, not a regular file, unreadable, too large, not UTF-8, or refused by ``parse_yaml``.
    """
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    if not path.is_file():  # a directory, a FIFO (opening it would wait for a writer), a device
        raise ConfigError(f"{path}: not a regular file, so not a config file")
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config ({error.strerror or error})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: config file is larger than {MAX_CONFIG_BYTES // 2**20} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: cannot read config (not UTF-8 text: byte 0x{data[error.start]:02x} "
                          f"at offset {error.start})") from None
    return parse_yaml(text, str(path))
