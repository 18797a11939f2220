#!/usr/bin/env bash
# Refresh the lock files from the ranges they are resolved from:
#   requirements-test.txt            this repository's tests and tools (pyproject.toml [test])
#   template/requirements.txt        what every generated service runs in production: the
#                                    runtime (runtime/pyproject.toml) and its dependencies
#   template/requirements-dev.txt    what a generated service's tests and linting add
# Each lock is universal: one file for Python 3.10 to 3.13 and every platform, with markers.
# Existing pins are kept unless a range excludes them (uv reads the output file first); delete
# a lock to resolve everything afresh.
# Needs uv (`pip install uv`). Afterwards: run the suite, regenerate the examples
# (scripts/regenerate_examples.py) and commit the locks with them.
set -euo pipefail
cd "$(dirname "$0")/.."

compile() { uv pip compile --quiet --universal --python-version 3.10 "$@"; }

compile pyproject.toml --extra test -o requirements-test.txt \
  --custom-compile-command "scripts/refresh_locks.sh"

# shoestring-runtime is on no index: the services' locks resolve it from a wheel of runtime/ in
# vendor/, where `shoestring new --vendor-runtime` puts it in a service (the locks say
# `--find-links vendor`).
cd template
trap 'rm -rf vendor' EXIT
rm -rf vendor
python3 -m pip wheel --quiet --no-deps --no-build-isolation -w vendor ../runtime
compile requirements.in --find-links vendor --emit-find-links -o requirements.txt \
  --custom-compile-command "uv pip compile requirements.in --universal --python-version 3.10 --find-links vendor --emit-find-links -o requirements.txt"
compile requirements-dev.in -c requirements.txt --find-links vendor --emit-find-links -o requirements-dev.txt \
  --custom-compile-command "uv pip compile requirements-dev.in --universal --python-version 3.10 -c requirements.txt --find-links vendor --emit-find-links -o requirements-dev.txt"
