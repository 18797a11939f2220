"""The manifest: what the generator wrote into a service, so the next run knows what it owns.

`.shoestring/manifest.json` in the service's root holds

- `generator`: the version that wrote it;
- `spec_sha256`: the hash of the spec model the files were generated from;
- `files`: path -> sha256 of every file under `<package>/_generated/` as written, so a stale
  file (no longer generated) is removed only when nobody edited it, and drift shows;
- `stubs`: path -> sha256 of every handler stub as created, so the stub of a removed endpoint
  or subscription goes away only while it is still the untouched stub;
- `accepted_spec`: the spec model itself, the baseline the next spec is compared against;
- `allowed_breaking` (only once there is one): each breaking change accepted with
  `generate --allow-breaking REASON`, with the reason, the spec hash and the findings it allowed.

Stubs are kept apart from `files` because they become the user's code: editing one is the
point, not drift.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_PATH = ".shoestring/manifest.json"


class ManifestError(Exception):
    """The manifest exists but cannot be read; the message says how to recover."""


@dataclass
class Manifest:
    generator: str
    spec_sha256: str
    files: dict[str, str] = field(default_factory=dict)
    stubs: dict[str, str] = field(default_factory=dict)
    accepted_spec: dict[str, Any] = field(default_factory=dict)
    allowed_breaking: list[dict[str, Any]] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, indent 2, final newline): deterministic across runs."""
        document = {
            "generator": self.generator,
            "spec_sha256": self.spec_sha256,
            "files": dict(sorted(self.files.items())),
            "stubs": dict(sorted(self.stubs.items())),
            "accepted_spec": self.accepted_spec,
        }
        if self.allowed_breaking:
            document["allowed_breaking"] = self.allowed_breaking
        text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False)
        return (text + "\n").encode("utf-8")


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def load_manifest(root: Path) -> Manifest | None:
    """The manifest of the service at `root`, or None when it has none yet."""
    path = root / MANIFEST_PATH
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ManifestError(
            f"{path}: cannot read the manifest ({exc}); restore it from version control, or "
            f"delete it to start afresh (stale generated files are then not cleaned up)"
        ) from exc
    try:
        return Manifest(
            generator=str(data["generator"]),
            spec_sha256=str(data["spec_sha256"]),
            files={str(k): str(v) for k, v in data.get("files", {}).items()},
            stubs={str(k): str(v) for k, v in data.get("stubs", {}).items()},
            accepted_spec=dict(data.get("accepted_spec", {})),
            allowed_breaking=[dict(entry) for entry in data.get("allowed_breaking", [])],
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ManifestError(
            f"{path}: the manifest is damaged (missing or malformed {exc}); restore it from "
            f"version control, or delete it to start afresh"
        ) from exc
