"""Regenerate the services committed under examples/ from their service.yaml.

    .venv/bin/python scripts/regenerate_examples.py            # every example
    .venv/bin/python scripts/regenerate_examples.py orders     # only examples/orders

Each examples/<name>/ is exactly what `shoestring new examples/<name>/service.yaml -o DIR
--src-path ../..` creates: `--src-path ../..` makes its .copier-answers.yml point at this
repository, the same on every machine (`copier update` run inside an example finds the template
two folders up). Run this after changing the template or the generator, and commit the result;
tests/test_new_examples.py fails while an example differs from what this script writes.

Files the example's own .gitignore excludes (a virtualenv, var/, caches from running its tests)
are local state: the script leaves them alone and the test does not compare them.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pathspec
from shoestring.new import create_service
from shoestring.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SRC_PATH = "../.."  # from examples/<name>/ to the repository's root, where copier.yml is


def example_names() -> list[str]:
    return sorted(path.parent.name for path in EXAMPLES.glob("*/service.yaml"))


def render_example(spec_file: Path, out: Path) -> None:
    """Create the service of `spec_file` in `out`, as the committed example is created."""
    result = load_spec(spec_file)
    if result.spec is None or not result.ok:
        problems = "\n".join(problem.format() for problem in result.problems)
        raise SystemExit(f"{spec_file} is not a valid spec:\n{problems}")
    create_service(spec_file, result.spec, out, src_path=SRC_PATH)


def tracked_files(root: Path) -> dict[str, bytes]:
    """Path -> content of every file under `root` that its .gitignore does not exclude."""
    ignore_file = root / ".gitignore"
    lines = ignore_file.read_text(encoding="utf-8").splitlines() if ignore_file.exists() else []
    ignored = pathspec.GitIgnoreSpec.from_lines(lines)
    found: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not ignored.match_file(relative):
            found[relative] = path.read_bytes()
    return found


def regenerate(name: str) -> list[str]:
    """Rewrite examples/<name>/ from its service.yaml; return the paths that changed."""
    target = EXAMPLES / name
    with tempfile.TemporaryDirectory(prefix=f"shoestring-example-{name}-") as scratch:
        fresh = Path(scratch) / name
        render_example(target / "service.yaml", fresh)
        wanted = tracked_files(fresh)
        present = tracked_files(target)
        changed = sorted(
            path for path in wanted.keys() | present.keys() if wanted.get(path) != present.get(path)
        )
        for path in present.keys() - wanted.keys():
            (target / path).unlink()
        for path in changed:
            if path in wanted:
                (target / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(fresh / path, target / path)
    _remove_empty_folders(target)
    return changed


def _remove_empty_folders(root: Path) -> None:
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def main(argv: list[str]) -> int:
    names = argv or example_names()
    unknown = sorted(set(names) - set(example_names()))
    if unknown:
        print(f"no examples/<name>/service.yaml for: {', '.join(unknown)}", file=sys.stderr)
        return 2
    for name in names:
        changed = regenerate(name)
        print(f"examples/{name}: {len(changed)} file(s) changed")
        for path in changed:
            print(f"  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
