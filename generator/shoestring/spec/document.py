"""Reading a YAML spec into plain data that remembers where every key and value came from.

PyYAML's parser (libyaml's when it is installed) turns the text into events; `compose` builds
the tree itself instead of using PyYAML's composer, for four reasons:

- every key and value keeps its line and column, so any problem found later can be located;
- a key that appears twice is reported at the second occurrence instead of silently winning;
- keys stay as written: `on:` is the text "on" (not True) and `1:` is "1", remembered as an int;
- hostile input is refused early, without recursion: nesting deeper than `MAX_DEPTH` and alias
  expansion beyond `MAX_NODES` values (the "billion laughs" bomb) stop the read.

Scalar values follow YAML 1.1 as PyYAML's safe loader reads them (ints, floats, booleans, null,
text), except timestamps, which stay text: a spec's data is JSON, and dates in it are strings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.resolver import Resolver

from .problems import Problem

# A spec is a few hundred lines; the limits are far above that and far below harm.
MAX_BYTES = 1024 * 1024
MAX_DEPTH = 50
MAX_NODES = 100_000

# Characters YAML forbids in a stream (C0 controls except tab/LF/CR, DEL, surrogates, ...).
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_TAG_PREFIX = "tag:yaml.org,2002:"
_SCALAR_TYPES = {"str", "int", "float", "bool", "null"}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(eq=False)
class Node:
    """A value of the document with its position (1-based) and, for collections, its children.

    `value` is plain JSON-able data (dict with str keys, list, str, int, float, bool, None).
    Nodes reached through a YAML alias are shared, like the data they hold.
    """

    kind: str  # "map" | "seq" | "scalar"
    value: Any
    line: int
    col: int
    entries: dict[str, tuple[Node, Node]] = field(default_factory=dict)  # key -> (key, value)
    items: list[Node] = field(default_factory=list)
    scalar_type: str = ""  # for scalars: str, int, float, bool or null, as YAML resolved it
    quoted: bool = False
    text: str = ""  # for scalars: the value exactly as written
    size: int = 1  # values in this subtree once aliases are expanded
    height: int = 1

    def child(self, step: str | int) -> Node | None:
        """The value node at key or index `step`, or None."""
        if self.kind == "map" and isinstance(step, str) and step in self.entries:
            return self.entries[step][1]
        if self.kind == "seq" and isinstance(step, int) and 0 <= step < len(self.items):
            return self.items[step]
        return None

    def key(self, name: str) -> Node | None:
        """The key node of entry `name` of a mapping, or None."""
        entry = self.entries.get(name) if self.kind == "map" else None
        return entry[0] if entry else None


@dataclass
class Document:
    """The outcome of reading: the root node (None when unreadable or empty) and the problems.

    `unreadable` is true when the text could not be read as YAML at all (as opposed to YAML
    that reads but breaks a rule, like a duplicate key).
    """

    root: Node | None
    problems: list[Problem]
    unreadable: bool = False


class _Refused(Exception):
    """Reading stops here: the input breaks a limit or YAML itself."""

    def __init__(self, line: int, col: int, message: str, hint: str, code: str) -> None:
        super().__init__(message)
        self.line, self.col, self.message, self.hint, self.code = line, col, message, hint, code


def locate(root: Node | None, path: list[str | int] | tuple, *, at_key: bool = False) -> tuple[int, int]:
    """Line and column of the value at `path` (of its key with `at_key`), or the nearest parent."""
    if root is None:
        return 1, 1
    node = root
    for position, step in enumerate(path):
        last = position == len(path) - 1
        if at_key and last and node.kind == "map" and isinstance(step, str):
            key = node.key(step)
            if key is not None:
                return key.line, key.col
        child = node.child(step)
        if child is None:
            break
        node = child
    return node.line, node.col


def read_text(file: str, data: bytes) -> tuple[str | None, Problem | None]:
    """Decode `data` as UTF-8 (a BOM is allowed); a problem located at the first bad byte."""
    if len(data) > MAX_BYTES:
        return None, Problem(
            file, 1, 1,
            f"the file is {len(data) / 1e6:.1f} MB; a spec is at most {MAX_BYTES // 1024} KiB",
            "point shoestring at the service's service.yaml", "too-large",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")) + 1
        return None, Problem(
            file, line, col,
            f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} cannot be decoded)",
            "save the spec as UTF-8; is this the right file?", "not-utf8",
        )
    bad = _NOT_PRINTABLE.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        col = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        return None, Problem(
            file, line, col,
            f"the file holds a control character (U+{ord(bad.group()):04X}) that YAML does not allow",
            "remove it; a spec is plain text", "not-text",
        )
    return text, None


def compose(file: str, text: str) -> Document:
    """Parse `text` into a `Document`, collecting every rule broken along the way."""
    builder = _Builder(file)
    try:
        builder.run(text)
    except _Refused as refusal:
        problem = Problem(file, refusal.line, refusal.col, refusal.message, refusal.hint, refusal.code)
        return Document(None, [*builder.problems, problem], unreadable=True)
    except yaml.MarkedYAMLError as exc:
        return Document(None, [*builder.problems, _syntax_problem(file, text, exc)], unreadable=True)
    except yaml.YAMLError as exc:  # reader errors carry no mark; the printable scan makes them rare
        problem = Problem(file, 1, 1, f"cannot read YAML: {exc}", "", "yaml-syntax")
        return Document(None, [*builder.problems, problem], unreadable=True)
    return Document(builder.root, builder.problems)


def _syntax_problem(file: str, text: str, exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    message = exc.problem or "invalid YAML"
    if exc.context:
        message = f"{exc.context}: {message}"
    source_line = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
    hint = "fix the YAML syntax here"
    if "\t" in message or "\\t" in message or source_line[: col].lstrip(" ").startswith("\t"):
        hint = "indent with spaces: YAML does not allow tabs for indentation"
    elif "nesting depth" in message:
        hint = "a spec is a few levels deep; is this the right file?"
    elif re.search(r"[{,]\s*\w+\s*:\s*(enum|list)\[", source_line):
        hint = 'inside {...} or [...] quote compact types that hold brackets, e.g. "enum[a, b]"'
    elif ": " in source_line and source_line.count(":") > 1 and "mapping values" in message:
        hint = "a value that contains ': ' must be quoted"
    return Problem(file, line, col, f"YAML syntax error: {message}", hint, "yaml-syntax")


class _Frame:
    """A collection being composed: its node, plus the pending key and merges of a mapping."""

    def __init__(self, node: Node, anchor: str | None) -> None:
        self.node = node
        self.anchor = anchor
        self.key: Node | None = None
        self.skip_value = False
        self.merges: list[Node] = []


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.root: Node | None = None
        self.anchors: dict[str, Node] = {}
        self.stack: list[_Frame] = []
        self.resolver = Resolver()
        self.constructor = SafeConstructor()
        self.documents = 0

    def run(self, text: str) -> None:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.DocumentStartEvent):
                self.documents += 1
                if self.documents > 1:
                    self.error(event.start_mark, "the file holds more than one YAML document",
                               "a spec is one document: remove the second '---' and what follows "
                               "or move it to its own file", "several-documents")
                    return
                self.anchors = {}
            elif isinstance(event, yaml.ScalarEvent):
                self.attach(self.scalar(event), event)
            elif isinstance(event, yaml.AliasEvent):
                self.attach(self.alias(event), event)
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                kind = "map" if isinstance(event, yaml.MappingStartEvent) else "seq"
                self.check_tag(event, kind)
                mark = event.start_mark
                node = Node(kind, {} if kind == "map" else [], mark.line + 1, mark.column + 1)
                if len(self.stack) >= MAX_DEPTH:
                    raise _Refused(node.line, node.col,
                                   f"the spec nests deeper than {MAX_DEPTH} levels",
                                   "a spec is a few levels deep; is this the right file?",
                                   "too-deep")
                self.stack.append(_Frame(node, event.anchor))
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frame = self.stack.pop()
                if frame.node.kind == "map":
                    self.finish_mapping(frame)
                if frame.anchor is not None:
                    self.anchors[frame.anchor] = frame.node
                self.attach(frame.node, event)

    def error(self, mark: Any, message: str, hint: str, code: str) -> None:
        self.problems.append(Problem(self.file, mark.line + 1, mark.column + 1, message, hint, code))

    def check_tag(self, event: Any, kind: str) -> str | None:
        """The short name of an explicit standard tag, None without one; refuses other tags."""
        tag = event.tag
        if tag is None or tag == "!":
            return None
        name = tag[len(_TAG_PREFIX):] if tag.startswith(_TAG_PREFIX) else None
        allowed = _SCALAR_TYPES if kind == "scalar" else {kind}
        if name in allowed:
            return name
        mark = event.start_mark
        raise _Refused(mark.line + 1, mark.column + 1,
                       f"YAML tag '{tag}' is not supported in a spec",
                       "remove the tag; a spec holds plain mappings, lists and values", "yaml-tag")

    def scalar(self, event: yaml.ScalarEvent) -> Node:
        explicit = self.check_tag(event, "scalar")
        tag = _TAG_PREFIX + explicit if explicit else self.resolver.resolve(
            yaml.ScalarNode, event.value, event.implicit)
        name = tag[len(_TAG_PREFIX):] if tag.startswith(_TAG_PREFIX) else "str"
        mark = event.start_mark
        value: Any = event.value
        if name in {"int", "float", "bool", "null"}:
            try:
                value = getattr(self.constructor, f"construct_yaml_{name}")(
                    yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark))
            except (ConstructorError, ValueError):
                raise _Refused(mark.line + 1, mark.column + 1,
                               f"'{event.value}' is not a valid {name}",
                               "write the value without the tag, or fix it", "yaml-tag") from None
            if name == "float" and not math.isfinite(value):
                self.error(mark, f"'{event.value}' is not a finite number",
                           "write a finite number; JSON has no infinity or NaN", "not-finite")
                value, name = event.value, "str"
        elif name != "merge":
            name = "str"  # timestamps, binary-looking text, '=': kept as the text written
        node = Node("scalar", value, mark.line + 1, mark.column + 1, scalar_type=name,
                    quoted=event.style in ("'", '"'), text=event.value)
        if event.anchor is not None:
            self.anchors[event.anchor] = node
        return node

    def alias(self, event: yaml.AliasEvent) -> Node:
        node = self.anchors.get(event.anchor)
        mark = event.start_mark
        if node is None:
            raise _Refused(mark.line + 1, mark.column + 1,
                           f"alias '*{event.anchor}' refers to no anchor defined before it",
                           f"define '&{event.anchor}' earlier in the file", "yaml-syntax")
        if len(self.stack) + node.height > MAX_DEPTH:
            raise _Refused(mark.line + 1, mark.column + 1,
                           f"alias '*{event.anchor}' nests the spec deeper than {MAX_DEPTH} levels",
                           "use fewer nested aliases", "too-deep")
        return node

    def attach(self, node: Node, event: Any) -> None:
        """Add a finished node to the collection being composed (or make it the root)."""
        if not self.stack:
            self.root = node
            return
        frame = self.stack[-1]
        parent = frame.node
        parent.size += node.size
        parent.height = max(parent.height, node.height + 1)
        if parent.size > MAX_NODES:
            raise _Refused(parent.line, parent.col,
                           f"the spec holds more than {MAX_NODES} values once YAML aliases "
                           "are expanded",
                           "a spec is small: is this the right file, or do aliases repeat "
                           "aliases (a 'billion laughs' bomb)?", "too-large")
        if parent.kind == "seq":
            parent.items.append(node)
            parent.value.append(node.value)
            return
        if frame.key is None:
            frame.key = node
            frame.skip_value = False
            if node.kind != "scalar":
                frame.skip_value = True
                self.problems.append(Problem(
                    self.file, node.line, node.col, "a key must be plain text, not a "
                    + ("mapping" if node.kind == "map" else "list"),
                    "write `name: value`; keys are names", "bad-key"))
            elif node.text == "" and not node.quoted:
                frame.skip_value = True
                self.problems.append(Problem(self.file, node.line, node.col, "a key is empty",
                                             "write a name before the ':'", "bad-key"))
            return
        key, frame.key = frame.key, None
        if frame.skip_value:
            return
        if key.scalar_type == "merge":
            self.add_merge(frame, node, key)
            return
        name = _key_text(key)
        if name in parent.entries:
            first = parent.entries[name][0]
            self.problems.append(Problem(
                self.file, key.line, key.col,
                f"duplicate key '{name}' (first defined at line {first.line})",
                "remove one of them or rename it; YAML keeps only one value per key",
                "duplicate-key"))
            return
        parent.entries[name] = (key, node)
        parent.value[name] = node.value

    def add_merge(self, frame: _Frame, node: Node, key: Node) -> None:
        sources = node.items if node.kind == "seq" else [node]
        if any(source.kind != "map" for source in sources):
            self.problems.append(Problem(
                self.file, key.line, key.col, "'<<' merges a mapping or a list of mappings",
                "point '<<:' at an anchored mapping, e.g. <<: *defaults", "bad-merge"))
            return
        frame.merges.extend(sources)

    def finish_mapping(self, frame: _Frame) -> None:
        """Merge keys (`<<: *base`) fill in what the mapping does not set itself."""
        node = frame.node
        for source in frame.merges:
            for name, entry in source.entries.items():
                if name not in node.entries:
                    node.entries[name] = entry
                    node.value[name] = entry[1].value


def _key_text(node: Node) -> str:
    """A key as written: `on` stays "on", `1` becomes "1" (its int-ness stays on the node)."""
    return node.text
