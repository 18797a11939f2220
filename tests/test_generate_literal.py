"""Python literals laid out by the generator are what `ruff format` would write."""

from __future__ import annotations

import ast
import random
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from shoestring.literal import Code, flat, layout
from shoestring.render import _from_import, _natural_order


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.4:
        kind = rng.choice("sibnf")
        if kind == "s":
            return "".join(
                rng.choice(string.ascii_letters + " -'\"\\é") for _ in range(rng.randint(0, 40))
            )
        if kind == "i":
            return rng.randint(-(10**6), 10**12)
        if kind == "b":
            return rng.choice([True, False])
        if kind == "n":
            return None
        return 1.5
    if roll < 0.7:
        return {
            "".join(rng.choice(string.ascii_lowercase + "_") for _ in range(rng.randint(1, 25))): (
                _random_value(rng, depth + 1)
            )
            for _ in range(rng.randint(0, 5))
        }
    return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def _modules() -> dict[str, tuple[str, Any]]:
    rng = random.Random(20240601)
    modules: dict[str, tuple[str, Any]] = {}
    for number in range(150):
        value = _random_value(rng)
        source = "def handle(ctx, data):\n" + layout(value, indent=1, prefix="return ") + "\n"
        modules[f"random_{number}.py"] = (source, value)
    for length in (5, 30, 60):
        names = [f"on_{'m' * length}_v{n}" for n in (10, 2, 1)]
        subscribers = {
            (f"{'m' * length}.created", n): Code(f"on_{'m' * length}_v{n}.handle")
            for n in (1, 2, 10)
        }
        source = (
            "from collections.abc import Callable\nfrom typing import Any\n\n"
            + _from_import("..handlers", sorted(names, key=_natural_order))
            + "\n\n"
            + layout(
                subscribers, prefix="SUBSCRIBERS: dict[tuple[str, int], Callable[..., Any]] = "
            )
            + "\n"
        )
        modules[f"registry_{length}.py"] = (source, None)
    return modules


MODULES = _modules()


@pytest.mark.parametrize("line_length", ["88", "100", "120"])
def test_layout_is_stable_under_ruff_format_at_any_line_length_from_88(
    tmp_path: Path, line_length: str
) -> None:
    for name, (source, _) in MODULES.items():
        (tmp_path / name).write_text(source, encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "format",
            "--isolated",
            "--check",
            "--diff",
            "--line-length",
            line_length,
            ".",
        ],
        cwd=tmp_path,
        capture_output=True,
        check=False,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_imports_are_in_the_order_ruff_isort_wants(tmp_path: Path) -> None:
    for name, (source, _) in MODULES.items():
        if name.startswith("registry_"):
            (tmp_path / name).write_text(source, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "I", "."],
        cwd=tmp_path,
        capture_output=True,
        check=False,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_layout_evaluates_back_to_the_value() -> None:
    for source, value in MODULES.values():
        if value is None:
            continue
        returned = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Return))
        assert ast.literal_eval(returned.value) == value


def test_flat_writes_python_not_json() -> None:
    assert (
        flat({"a": [True, False, None], "b": ("x", 1)})
        == '{"a": [True, False, None], "b": ("x", 1)}'
    )
    assert flat(("only",)) == '("only",)'
    with pytest.raises(TypeError, match="no Python literal for set"):
        flat({1, 2})
