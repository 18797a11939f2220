"""The `shoestring` command line: one Click group, one small function per command.

Commands only parse options, call the library and turn its result into output and an exit code;
the work lives in the modules they call (`shoestring.spec` for `schema` and `validate`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__
from .breaking import (
    GROUPS,
    RULES,
    BaselineError,
    Policy,
    Side,
    allowance,
    compare,
    load_baseline,
    since_accepted,
)
from .converters import stale_references
from .generate import GenerateError, Plan, apply_plan, pinned_runtime, plan_generation
from .graph import mermaid, svg
from .manifest import MANIFEST_PATH, ManifestError, load_manifest
from .new import DATABASES, NewServiceError, create_service
from .render import SPEC_FILE
from .spec import LoadResult, load_spec, schema_text
from .system import System, check_system, load_system
from .upgrade import UpgradeError, upgrade_service
from .vendor import VENDOR_DIR, VendorError, vendor_runtime

# `validate` exit codes: scripts and CI tell "fix the spec" from "could not read it at all".
EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNREADABLE = 2


# `--vendor-runtime` of `new` and `generate`.
_VENDOR_RUNTIME_HELP = (
    f"Put the wheel of shoestring-runtime (the version this shoestring ships with) into "
    f"{VENDOR_DIR}/, replacing an older one: the lock's `--find-links {VENDOR_DIR}` then "
    f"installs the runtime, which is on no public index yet, on any machine that reaches PyPI "
    f"(cPanel, a VPS). Upload {VENDOR_DIR}/ with the service."
)


def _format_option(text_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--format text|json` (default text) of the commands that report problems; `text_help`
    says what a text line and a JSON object are."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help=text_help,
    )


@click.group()
@click.version_option(__version__, prog_name="shoestring")
def main() -> None:
    """Turn a service spec (service.yaml) into a complete Python service."""


@main.command()
def schema() -> None:
    """Print the JSON Schema of service.yaml (point your editor at it for completion)."""
    click.echo(schema_text(), nl=False)


@main.command()
@click.argument("spec", type=click.Path(path_type=Path))
@_format_option("text: one `file:line:col: message` per problem; json: a list of problem objects.")
def validate(spec: Path, output_format: str) -> None:
    """Check SPEC and report every problem. Exit 0 valid, 1 invalid, 2 unreadable."""
    result = load_spec(spec)
    if output_format == "json":
        click.echo(json.dumps([problem.to_dict() for problem in result.problems], indent=2))
    else:
        for problem in result.problems:
            click.echo(problem.format(), err=True)
        if result.ok:
            warnings = len(result.problems)
            suffix = f" ({warnings} warning{'s' if warnings != 1 else ''})" if warnings else ""
            click.echo(f"{spec}: valid{suffix}")
    if result.unreadable:
        sys.exit(EXIT_UNREADABLE)
    sys.exit(EXIT_VALID if result.ok else EXIT_INVALID)


def _load_or_exit(spec: Path) -> dict:
    """The spec model of `spec`; on problems print them like `validate` does, then exit."""
    return _load_result_or_exit(spec).spec


def _load_result_or_exit(spec: Path) -> LoadResult:
    """`load_spec(spec)` of a valid spec; on problems print them like `validate`, then exit."""
    result = load_spec(spec)
    for problem in result.problems:
        click.echo(problem.format(), err=True)
    if result.unreadable:
        sys.exit(EXIT_UNREADABLE)
    if not result.ok:
        sys.exit(EXIT_INVALID)
    return result


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory of the new service (created; must be empty unless --force).",
)
@click.option(
    "--database",
    type=click.Choice(DATABASES),
    default="sqlite",
    show_default=True,
    help="Database of development and first runs (production sets DATABASE_URL).",
)
@click.option(
    "--template",
    metavar="PATH_OR_URL",
    help="Template to render: a shoestring checkout or its git URL "
    "[default: the checkout this shoestring runs from].",
)
@click.option(
    "--src-path",
    metavar="PATH_OR_URL",
    help="Template location to record in .copier-answers.yml for `copier update` "
    "[default: a local template's path relative to the service, or the URL].",
)
@click.option("--force", is_flag=True, help="Render into a directory that is not empty.")
@click.option("--vendor-runtime", is_flag=True, help=_VENDOR_RUNTIME_HELP)
def new(
    spec: Path,
    out: Path,
    database: str,
    template: str | None,
    src_path: str | None,
    force: bool,
    vendor_runtime: bool,
) -> None:
    """Create a service from SPEC: the template's skeleton, SPEC as service.yaml, generated code."""
    model = _load_or_exit(spec)
    try:
        created = create_service(
            spec, model, out, template=template, src_path=src_path, database=database, force=force
        )
    except (NewServiceError, GenerateError, ManifestError) as exc:
        raise click.ClickException(str(exc)) from exc
    _echo_warnings(created.plan)
    if vendor_runtime:
        _vendor_runtime_or_exit(out)
    package = created.package
    # shoestring-runtime is on no public index yet: pip finds it only in vendor/.
    vendor_step = "" if vendor_runtime else "  shoestring generate --vendor-runtime\n"
    click.echo(
        f"created {out}: service '{model['service']['name']}', package '{package}'\n"
        f"\nnext steps:\n"
        f"  cd {out}\n"
        f"{vendor_step}"
        f"  python -m venv .venv && .venv/bin/pip install -r requirements-dev.txt\n"
        f"  .venv/bin/python -m {package} migrate\n"
        f"  .venv/bin/python -m pytest\n"
        f"  .venv/bin/python -m {package} serve\n"
        f"write the business logic in {package}/handlers/; after changing service.yaml, "
        f"run `shoestring generate`"
    )


@main.command()
@click.argument(
    "directory", default=".", type=click.Path(file_okay=False, exists=True, path_type=Path)
)
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 1 listing every file that differs from what would be generated.",
)
@click.option(
    "--dry-run", is_flag=True, help="Write nothing; list what would be created, updated, removed."
)
@click.option(
    "--only-if-generated",
    is_flag=True,
    help="Do nothing in a directory without a manifest (the template's `copier update` task "
    "uses it to skip Copier's temporary copies).",
)
@click.option(
    "--allow-breaking",
    metavar="REASON",
    help="Generate even though the spec breaks peers or clients of the spec accepted last; "
    "the reason and the changes it allows are recorded in the manifest.",
)
@click.option("--vendor-runtime", is_flag=True, help=_VENDOR_RUNTIME_HELP)
def generate(
    directory: Path,
    check: bool,
    dry_run: bool,
    only_if_generated: bool,
    allow_breaking: str | None,
    vendor_runtime: bool,
) -> None:
    """Regenerate the spec-derived code of the service in DIRECTORY from its service.yaml."""
    if vendor_runtime and (check or dry_run):
        raise click.UsageError(
            "--vendor-runtime writes vendor/: run it without --check and --dry-run"
        )
    if only_if_generated and not (directory / MANIFEST_PATH).is_file():
        click.echo(f"{directory}: no {MANIFEST_PATH}, nothing generated here; skipped", err=True)
        return
    spec_file = directory / SPEC_FILE
    if not spec_file.is_file():
        raise click.ClickException(
            f"no {SPEC_FILE} in {directory}: run in a service's root directory, or create a "
            f"service with `shoestring new SPEC -o DIR`"
        )
    result = _load_result_or_exit(spec_file)
    model = result.spec
    try:
        allowed = _breaking_since_accepted(directory, result, check or dry_run, allow_breaking)
        plan = plan_generation(directory, model, allowed_breaking=allowed)
    except (GenerateError, ManifestError) as exc:
        raise click.ClickException(str(exc)) from exc
    if check:
        if plan.nothing_to_do:
            click.echo(f"{directory}: up to date with {SPEC_FILE}")
            return
        for line in plan.drift:
            click.echo(line)
        click.echo(f"{directory}: not up to date; run `shoestring generate {directory}`", err=True)
        sys.exit(1)
    if plan.nothing_to_do:
        click.echo(f"nothing to do: {directory} is up to date with {SPEC_FILE}")
    else:
        for change in plan.changes:
            click.echo(f"{change.action:<7} {change.path}")
        if dry_run:
            click.echo("dry run: nothing written")
            return
        _echo_warnings(plan)
        apply_plan(plan)
    if vendor_runtime:
        _vendor_runtime_or_exit(directory)


@main.command()
@click.argument(
    "directory", default=".", type=click.Path(file_okay=False, exists=True, path_type=Path)
)
@click.option("--vendor-runtime", is_flag=True, help=_VENDOR_RUNTIME_HELP)
def upgrade(directory: Path, vendor_runtime: bool) -> None:
    """Move the service in DIRECTORY, made while the runtime was copied into services as
    <package>/chassis/, to the runtime library (shoestring-runtime).

    \b
    Kept as they are: service.yaml, your handlers (only their imports of the chassis are
    rewritten to shoestring_runtime, and listed), migrations/, .env, var/ and the database.
    Replaced by today's template: the wiring (<package>/__init__.py, __main__.py, app.py is
    created), passenger_wsgi.py, pyproject.toml, requirements*, .htaccess, deploy/, README.md,
    .env.example, .gitignore, .copier-answers.yml (answers kept) and the template's tests/
    (tests of your own are kept). Then generate runs, and <package>/chassis/ is removed.

    \b
    It refuses, changing nothing, when a file in <package>/chassis/ is not one the template
    shipped (each is listed with its fix), or when DIRECTORY is not a git work tree without
    uncommitted changes: review what it replaced with `git diff` afterwards. Then run
    `python -m <package> migrate` (it adopts the chassis's migration records) and the tests.
    A service without <package>/chassis/ is already upgraded: nothing to do.
    """
    try:
        result = upgrade_service(directory)
    except UpgradeError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        click.echo(f"refusing to upgrade {directory}: nothing was changed", err=True)
        sys.exit(1)
    if result.already_upgraded:
        click.echo(
            f"nothing to do: {directory} is already upgraded (no {result.package}/chassis/); "
            "template improvements come with `copier update`"
        )
    else:
        for title, paths in (
            ("rewrote chassis imports in", result.rewritten),
            ("replaced with today's template", result.replaced),
            ("created", result.created),
            ("removed (no longer in the template)", result.removed),
        ):
            for path in paths:
                click.echo(f"{title}: {path}")
        assert result.generation is not None
        for change in result.generation.changes:
            click.echo(f"generate: {change.action} {change.path}")
        _echo_warnings(result.generation)
        click.echo(f"removed {result.package}/chassis/")
        click.echo(
            f"upgraded {directory} to shoestring-runtime: review `git diff` (your edits to "
            f"replaced files show as removed lines), install the lock "
            f"(pip install -r requirements-dev.txt), run `python -m {result.package} migrate` "
            f"and the tests, then commit"
        )
    if vendor_runtime:
        _vendor_runtime_or_exit(directory)


def _vendor_runtime_or_exit(service: Path) -> None:
    """`--vendor-runtime`: the runtime's wheel into the service's vendor/, said on stdout."""
    try:
        vendored = vendor_runtime(service)
    except VendorError as exc:
        raise click.ClickException(str(exc)) from exc
    for old in vendored.removed:
        click.echo(f"removed {old.relative_to(service).as_posix()}")
    wheel = vendored.wheel.relative_to(service).as_posix()
    click.echo(f"vendored {wheel}" if vendored.changed else f"up to date {wheel}")
    # The lock comes from the template: a service made by an older shoestring pins the older
    # runtime until `copier update` brings the new lock, and pip would not find it in vendor/.
    pinned = pinned_runtime(service)
    if pinned is not None and pinned != __version__:
        click.echo(
            f"warning: requirements.txt pins shoestring-runtime=={pinned}, but {wheel} is "
            f"{__version__}: bring the service's locks to this shoestring with `copier update` "
            f"(or vendor with shoestring {pinned})",
            err=True,
        )


def _breaking_since_accepted(
    directory: Path, result: LoadResult, writes_nothing: bool, reason: str | None
) -> dict | None:
    """Compare the spec with the one the manifest accepted. Breaking changes stop generation
    (exit 1) unless `reason` accepts them; returns what the manifest is to record, if anything.
    """
    manifest = load_manifest(directory)
    findings = since_accepted(
        manifest.accepted_spec if manifest else None,
        result,
        SPEC_FILE,
        accepted_in=str(directory / MANIFEST_PATH),
    )
    if reason is not None and not reason.strip():
        raise click.UsageError("--allow-breaking needs a reason, e.g. --allow-breaking "
                               '"payments reads order.created v2 since release 41"')
    if not findings:
        if reason is not None and not writes_nothing:
            click.echo("note: no breaking changes to allow; --allow-breaking ignored", err=True)
        return None
    for finding in findings:
        click.echo(finding.format(), err=True)
    # The user's converters are not regenerated: say which still use a removed field.
    if result.spec is not None:
        for problem in stale_references(directory, result.spec, findings):
            click.echo(problem.format(), err=True)
    count = f"{len(findings)} breaking change{'s' if len(findings) != 1 else ''}"
    if writes_nothing:
        click.echo(f"{count} since the spec accepted last; generating needs --allow-breaking",
                   err=True)
        return None
    if reason is None:
        click.echo(
            f"refusing to generate: {count} since the spec accepted last "
            f"({MANIFEST_PATH}). Make the change compatibly (each line says how), or accept "
            'it with --allow-breaking "<why it is safe>" (the reason is recorded in the '
            "manifest).",
            err=True,
        )
        sys.exit(1)
    click.echo(f"allowed: {count} ({reason})", err=True)
    return allowance(reason, findings)


def _echo_warnings(plan: Plan) -> None:
    for warning in plan.warnings:
        click.echo(f"warning: {warning}", err=True)


@main.command()
@click.argument("spec", default="service.yaml", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--against",
    required=True,
    metavar="REF_OR_FILE",
    help="The spec to compare with: a file, or a git ref (commit, tag, branch) at which SPEC "
    "is read with `git show REF:SPEC`.",
)
@click.option(
    "--rules",
    type=click.Choice(GROUPS),
    help="The group of rules: WIRE < CONSUMERS < STRICT [default: the spec's `breaking: use:`, "
    "else CONSUMERS].",
)
@click.option(
    "--ignore",
    multiple=True,
    type=click.Choice(sorted(RULES)),
    metavar="RULE",
    help="Leave out a rule by id (repeatable), beside the spec's `breaking: except:`.",
)
@_format_option("text: one `file:line:col: RULE: message — fix` per change; json: a list of objects.")
def breaking(
    spec: Path, against: str, rules: str | None, ignore: tuple[str, ...], output_format: str
) -> None:
    """Report the changes of SPEC that break peers or clients of the spec at --against.

    Exit 0 none, 1 breaking changes found, 2 a spec could not be read.
    """
    new = load_spec(spec)
    try:
        old, old_name = load_baseline(against, spec)
    except BaselineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_UNREADABLE)
    for name, result in ((str(spec), new), (old_name, old)):
        if not result.ok:
            for problem in result.errors:
                click.echo(problem.format(), err=True)
            click.echo(f"error: {name} is not a valid spec; fix it to compare", err=True)
            sys.exit(EXIT_UNREADABLE)
    policy = Policy.from_spec(new.root)
    if rules:
        policy.use = rules
    policy.excepted.update(ignore)
    findings = compare(Side.of(old, old_name), Side.of(new, str(spec)), policy)
    if output_format == "json":
        click.echo(json.dumps([finding.to_dict() for finding in findings], indent=2))
    else:
        for finding in findings:
            click.echo(finding.format())
        count = len(findings)
        summary = f"{count} breaking change{'s' if count != 1 else ''}" if count \
            else "no breaking changes"
        click.echo(f"{spec}: {summary} against {old_name} (rules: {policy.use})", err=True)
    sys.exit(1 if findings else 0)


@main.command()
@click.argument("system_file", metavar="SYSTEM", type=click.Path(dir_okay=False, path_type=Path))
@_format_option("text: one `file:line:col: message — hint` per finding; json: a list of objects.")
def check(system_file: Path, output_format: str) -> None:
    """Check that the services listed in SYSTEM (a system.yaml) fit together.

    Every subscription has a publisher of its message and version that sends it, with the
    fields it requires; every `to:` target subscribes; called endpoints exist and the scopes
    granted cover them; no two services share a route. Warnings: messages nobody reads,
    deprecated versions still read. Exit 0 fits (warnings allowed), 1 errors, 2 unreadable.
    """
    system = _load_system_or_exit(system_file, output_format)
    problems = check_system(system)
    found = [*system.problems, *problems]
    if output_format == "json":
        click.echo(json.dumps([problem.to_dict() for problem in found], indent=2))
    else:
        for problem in found:
            click.echo(problem.format())
        errors = sum(problem.is_error for problem in found)
        warnings = len(found) - errors
        verdict = "the services fit together" if not errors else "the services do not fit"
        click.echo(
            f"{system_file}: {len(system.services)} services, {errors} error"
            f"{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}: "
            f"{verdict}",
            err=True,
        )
    sys.exit(EXIT_INVALID if any(problem.is_error for problem in found) else EXIT_VALID)


@main.command()
@click.argument("system_file", metavar="SYSTEM", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of stdout.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["mermaid", "svg"]),
    help="mermaid: a flowchart as text; svg: a picture [default: svg for an -o ending in .svg, "
    "else mermaid].",
)
def graph(system_file: Path, out: Path | None, output_format: str | None) -> None:
    """Draw the services of SYSTEM and the messages and calls between them."""
    system = _load_system_or_exit(system_file, "text")
    if output_format is None:
        output_format = "svg" if out is not None and out.suffix.lower() == ".svg" else "mermaid"
    text = svg(system) if output_format == "svg" else mermaid(system)
    if out is None:
        click.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out} ({output_format})", err=True)


def _load_system_or_exit(system_file: Path, output_format: str) -> System:
    """The system of `system_file`; when it or a spec it lists cannot be used, print why and
    exit (2 unreadable, 1 invalid)."""
    system = load_system(system_file)
    if system.ok:
        return system
    if output_format == "json":
        click.echo(json.dumps([problem.to_dict() for problem in system.problems], indent=2))
    else:
        for problem in system.problems:
            click.echo(problem.format(), err=True)
        click.echo(f"{system_file}: fix these problems first", err=True)
    sys.exit(EXIT_UNREADABLE if system.unreadable else EXIT_INVALID)
