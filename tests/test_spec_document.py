"""Reading YAML with positions: every key and value located, hostile input refused, no traceback."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import EXAMPLES
from shoestring.spec import load_spec_text
from shoestring.spec.document import MAX_DEPTH, compose, locate, read_text

SPECS = Path(__file__).parent / "specs"


def test_every_key_and_value_is_located() -> None:
    document = compose("s.yaml", "a:\n  b: [x, {c: 1}]\n  'd': >\n    text\n")
    root = document.root
    assert document.problems == [] and root is not None
    assert locate(root, ["a"], at_key=True) == (1, 1)
    assert locate(root, ["a"]) == (2, 3)
    assert locate(root, ["a", "b"], at_key=True) == (2, 3)
    assert locate(root, ["a", "b", 1, "c"]) == (2, 14)
    assert locate(root, ["a", "b", 1, "c"], at_key=True) == (2, 11)
    assert locate(root, ["a", "d"]) == (3, 8)
    # A path that leaves the document stops at the deepest node that exists.
    assert locate(root, ["a", "b", 7, "zz"]) == (2, 6)


def test_keys_stay_as_written_and_remember_their_yaml_type() -> None:
    root = compose("s.yaml", "on: 1\n1: x\n'2': y\nnull: z\n").root
    assert root is not None
    assert root.value == {"on": 1, "1": "x", "2": "y", "null": "z"}
    assert root.key("1").scalar_type == "int"
    assert root.key("2").scalar_type == "str" and root.key("2").quoted


def test_values_follow_yaml_but_timestamps_stay_text() -> None:
    root = compose("s.yaml", "a: 2026-01-01\nb: yes\nc: 0x10\nd: ~\ne: 1.5\nf: '1'\n").root
    assert root is not None
    assert root.value == {"a": "2026-01-01", "b": True, "c": 16, "d": None, "e": 1.5, "f": "1"}


def test_duplicate_key_is_an_error_at_the_second_key_and_the_first_value_stays() -> None:
    document = compose("s.yaml", "a: 1\nb: 2\na: 3\n")
    assert [(p.line, p.col, p.code) for p in document.problems] == [(3, 1, "duplicate-key")]
    assert document.root is not None and document.root.value == {"a": 1, "b": 2}


def test_aliases_and_merge_keys_are_expanded() -> None:
    root = compose("s.yaml", "base: &b {x: 1, y: 2}\nuse: {<<: *b, y: 3}\nsame: *b\n").root
    assert root is not None
    assert root.value["use"] == {"x": 1, "y": 3}
    assert root.value["same"] == {"x": 1, "y": 2}


def test_merge_of_a_scalar_is_reported() -> None:
    document = compose("s.yaml", "a: &a 1\nb: {<<: *a}\n")
    assert [p.code for p in document.problems] == ["bad-merge"]


@pytest.mark.parametrize(
    ("text", "code", "line", "col"),
    [
        ("a: !!python/object:os.system x\n", "yaml-tag", 1, 4),
        ("a: !custom x\n", "yaml-tag", 1, 4),
        ("a: *nowhere\n", "yaml-syntax", 1, 4),
        ("a: &x [*x]\n", "yaml-syntax", 1, 8),
        ("a: [1\n", "yaml-syntax", 2, 1),
        ("a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n", "too-deep", 1, 53),
    ],
)
def test_hostile_or_broken_yaml_is_refused_with_a_location(
        text: str, code: str, line: int, col: int) -> None:
    document = compose("s.yaml", text)
    assert document.unreadable and document.root is None
    assert [(p.code, p.line, p.col) for p in document.problems][-1:] == [(code, line, col)]


def test_deep_nesting_far_beyond_the_limit_does_not_recurse() -> None:
    depth = 100_000
    document = compose("s.yaml", "[" * depth + "]" * depth)
    [problem] = document.problems
    assert document.unreadable
    # libyaml's scanner stops at its own limit (1000) before the composer sees level 51.
    assert "deeper than 50 levels" in problem.message or "nesting depth" in problem.message
    assert "right file" in problem.hint


def test_non_finite_numbers_are_refused() -> None:
    document = compose("s.yaml", "a: .inf\nb: .nan\n")
    assert [p.code for p in document.problems] == ["not-finite", "not-finite"]


def test_utf8_bom_is_accepted_and_other_encodings_are_located() -> None:
    assert read_text("s", "\ufeffa: 1\n".encode())[0] == "a: 1\n"
    text, problem = read_text("s", "a: 1\nb: caf\u00e9\n".encode("latin-1"))
    assert text is None and problem is not None
    assert (problem.line, problem.col, problem.code) == (2, 7, "not-utf8")


def test_several_documents_are_refused() -> None:
    result = load_spec_text("s.yaml", "shoestring: 1\nservice: {name: a}\n---\nb: 2\n")
    assert [(p.line, p.code) for p in result.problems] == [(3, "several-documents")]


TOKENS = ["[]", "{}", "1", "0", "-1", "1.5", "true", "null", "~", '"x"', "- a", "a: b", "[a, b]",
          "{a: 1}", "&x a", "*x", "<<: {a: 1}", "? a", "!!int 3", "'", '"', "\t", "  ", "enum[",
          "list[int", "int?", "{schema: {type: string}}", "{schema: 5}", "{schema: {type: [1]}}",
          "/v1/{x}", "GET", "uuid", "{schema: {minItems: 99999999, type: array}}"]


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 4)):
        if not lines:
            break
        index = rng.randrange(len(lines))
        operation = rng.randrange(6)
        if operation == 0:
            del lines[index]
        elif operation == 1:
            lines.insert(index, lines[rng.randrange(len(lines))])
        elif operation == 2 and ":" in lines[index]:
            colon = lines[index].index(":")
            lines[index] = lines[index][: colon + 1] + " " + rng.choice(TOKENS)
        elif operation == 3:
            lines[index] = " " * rng.randrange(8) + lines[index].lstrip()
        elif operation == 4:
            at = rng.randrange(len(lines[index]) + 1)
            lines[index] = lines[index][:at] + rng.choice(TOKENS) + lines[index][at:]
        else:
            word = rng.choice(["name", "version", "fields", "path", "to", "from", "request"])
            lines[index] = lines[index].replace(word, rng.choice(TOKENS), 1)
    return "\n".join(lines)


def test_randomly_broken_specs_never_raise() -> None:
    sources = [path.read_text() for path in [*sorted(EXAMPLES.glob("*/service.yaml")),
                                              *sorted((SPECS / "valid").glob("*.yaml"))]]
    rng = random.Random(20260101)
    outcomes = set()
    for _ in range(400):
        result = load_spec_text("fuzz.yaml", mutate(rng.choice(sources), rng))
        outcomes.add("valid" if result.ok else "unreadable" if result.unreadable else "invalid")
        for problem in result.problems:
            assert problem.line >= 1 and problem.col >= 1 and problem.message
            assert problem.hint or not problem.is_error, problem
    assert outcomes == {"valid", "invalid", "unreadable"}
