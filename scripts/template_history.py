"""Write generator/shoestring/template_history.json: what the template shipped, from git history.

`shoestring upgrade` moves a service made while the runtime was copied into it
(`<package>/chassis/`, until commit 500bad8) to the runtime library. It removes the chassis only
when every file there is one the template shipped, and it replaces the files the template owns.
Both need the template's history, which an installed shoestring has no git repository to read:

- "chassis": for every file ever under template/{{package}}/chassis/ (path relative to the
  chassis), the sha256 of every version of it until the last commit with a chassis;
- "template_files": every path under template/ outside the chassis until then, as the template
  names it (`{{package}}/...`, `.jinja` suffixes), so that a service's test file can be told
  apart from one the template once had.

Services made after that commit have no chassis and never need `upgrade`: the history read ends
there, so the table never changes. Run from
the repository's root: `python scripts/template_history.py` writes the table,
`--check` exits 1 when the committed table differs from the history.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "generator" / "shoestring" / "template_history.json"
CHASSIS = "template/{{package}}/chassis/"
TEMPLATE = "template/"
NO_BLOB = "0" * 40
# The last commit whose template copied the chassis into services (500bad8).
LAST_CHASSIS_COMMIT = "500bad83ea81222b254473c591f93183c898d6fd"


def git(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", *args], cwd=REPO, input=stdin, check=True, capture_output=True
    ).stdout


def versions(prefix: str) -> dict[str, set[str]]:
    """Every path under `prefix` in the history up to LAST_CHASSIS_COMMIT, with the blob id of
    each version.

    `-m` shows merges against each parent, so a version made while resolving a merge counts.
    """
    raw = git(
        "log", "-m", "--format=", "--raw", "--no-abbrev", "--no-renames", LAST_CHASSIS_COMMIT, "--", prefix
    ).decode()
    found: dict[str, set[str]] = {}
    for line in raw.splitlines():
        if not line.startswith(":"):
            continue
        meta, path = line.split("\t", 1)
        blob = meta.split()[3]
        found.setdefault(path, set())
        if blob != NO_BLOB:
            found[path].add(blob)
    return found


def sha256_of(blobs: set[str]) -> list[str]:
    """The sha256 of each blob's content, sorted."""
    digests = set()
    for blob in blobs:
        digests.add(hashlib.sha256(git("cat-file", "blob", blob)).hexdigest())
    return sorted(digests)


def table() -> dict[str, object]:
    chassis = {
        path[len(CHASSIS):]: sha256_of(blobs)
        for path, blobs in sorted(versions(CHASSIS).items())
    }
    template_files = sorted(
        path[len(TEMPLATE):] for path in versions(TEMPLATE) if not path.startswith(CHASSIS)
    )
    return {"chassis": chassis, "template_files": template_files}


def render(data: dict[str, object]) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render(table())
    if argv == ["--check"]:
        if TABLE.is_file() and TABLE.read_text(encoding="utf-8") == text:
            return 0
        print(f"{TABLE} differs from the history: run `python scripts/template_history.py`")
        return 1
    TABLE.write_text(text, encoding="utf-8")
    print(f"wrote {TABLE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
