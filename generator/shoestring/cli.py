"""The `shoestring` command line: one Click group, one small function per command.

Commands only parse options, call the library and turn its result into output and an exit code;
the work lives in the modules they call (`shoestring.spec` for `schema` and `validate`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__
from .generate import GenerateError, Plan, apply_plan, plan_generation
from .manifest import MANIFEST_PATH, ManifestError
from .new import DATABASES, NewServiceError, create_service
from .render import SPEC_FILE
from .spec import load_spec, schema_text

# `validate` exit codes: scripts and CI tell "fix the spec" from "could not read it at all".
EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNREADABLE = 2


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
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: one `file:line:col: message` per problem; json: a list of problem objects.",
)
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
    result = load_spec(spec)
    for problem in result.problems:
        click.echo(problem.format(), err=True)
    if result.unreadable:
        sys.exit(EXIT_UNREADABLE)
    if not result.ok:
        sys.exit(EXIT_INVALID)
    return result.spec


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
def new(
    spec: Path, out: Path, database: str, template: str | None, src_path: str | None, force: bool
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
    package = created.package
    click.echo(
        f"created {out}: service '{model['service']['name']}', package '{package}'\n"
        f"\nnext steps:\n"
        f"  cd {out}\n"
        f"  python -m venv .venv && .venv/bin/pip install -r requirements.txt\n"
        f"  .venv/bin/python -m {package} migrate\n"
        f"  .venv/bin/python -m pytest\n"
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
def generate(directory: Path, check: bool, dry_run: bool, only_if_generated: bool) -> None:
    """Regenerate the spec-derived code of the service in DIRECTORY from its service.yaml."""
    if only_if_generated and not (directory / MANIFEST_PATH).is_file():
        click.echo(f"{directory}: no {MANIFEST_PATH}, nothing generated here; skipped", err=True)
        return
    spec_file = directory / SPEC_FILE
    if not spec_file.is_file():
        raise click.ClickException(
            f"no {SPEC_FILE} in {directory}: run in a service's root directory, or create a "
            f"service with `shoestring new SPEC -o DIR`"
        )
    model = _load_or_exit(spec_file)
    try:
        plan = plan_generation(directory, model)
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
        return
    for change in plan.changes:
        click.echo(f"{change.action:<7} {change.path}")
    if dry_run:
        click.echo("dry run: nothing written")
        return
    _echo_warnings(plan)
    apply_plan(plan)


def _echo_warnings(plan: Plan) -> None:
    for warning in plan.warnings:
        click.echo(f"warning: {warning}", err=True)
