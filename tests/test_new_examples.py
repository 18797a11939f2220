"""The services committed under examples/ are exactly what the generator produces today.

Each example is regenerated into a temporary directory the way scripts/regenerate_examples.py
writes it, and compared file by file. Only files the example's own .gitignore excludes are left
out of the comparison: they are local state from running the example (a virtualenv, var/,
caches), never committed. When this test fails after a change to the template or the generator,
run `.venv/bin/python scripts/regenerate_examples.py` and commit the result.
"""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _load_script() -> ModuleType:
    path = REPO / "scripts" / "regenerate_examples.py"
    spec = importlib.util.spec_from_file_location("regenerate_examples", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


examples = _load_script()


@pytest.mark.parametrize("name", examples.example_names())
def test_committed_example_is_what_the_generator_produces(tmp_path: Path, name: str) -> None:
    fresh = tmp_path / name
    examples.render_example(examples.EXAMPLES / name / "service.yaml", fresh)
    expected = examples.tracked_files(fresh)
    committed = examples.tracked_files(examples.EXAMPLES / name)

    differences = []
    for path in sorted(expected.keys() | committed.keys()):
        if path not in committed:
            differences.append(f"missing from examples/{name}: {path}")
        elif path not in expected:
            differences.append(f"not generated any more: examples/{name}/{path}")
        elif expected[path] != committed[path]:
            diff = difflib.unified_diff(
                committed[path].decode("utf-8", "replace").splitlines(),
                expected[path].decode("utf-8", "replace").splitlines(),
                f"examples/{name}/{path}",
                "generated",
                lineterm="",
                n=1,
            )
            differences.append("\n".join(list(diff)[:40]))
    if differences:
        pytest.fail(
            "the example differs from what the generator writes; run "
            "`.venv/bin/python scripts/regenerate_examples.py` and commit the result:\n"
            + "\n".join(differences),
            pytrace=False,
        )


def test_example_answers_point_at_this_repository() -> None:
    for name in examples.example_names():
        root = examples.EXAMPLES / name
        answers = yaml.safe_load((root / ".copier-answers.yml").read_text(encoding="utf-8"))
        assert answers["_src_path"] == "../.."
        assert (root / answers["_src_path"] / "copier.yml").is_file()
