# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""The service's command line: `python -m <package> COMMAND`.

    serve     run the HTTP service with waitress (local runs; cPanel uses passenger_wsgi.py)
    migrate   apply pending database migrations (safe to run from every deploy and cron)
    check     validate the settings, reach the database, list pending migrations
    routes    list the HTTP endpoints
    worker    handle queued messages and relay the outbox (cron: --max-seconds 55; VPS: --forever)
    dead-letters   list, show, requeue or purge messages that failed for good
    breakers  list the peers' circuit breakers, or close one by hand
    keys      generate, rotate, list or retire this service's signing keys
    token     print a token signed by this service (for scripts and tests)

A service adds commands of its own without editing the runtime: `run(service, commands=[...])`
(the package's `__main__.py` passes those its `app.py` lists), and `serve` runs the app its
`create_app` builds, own routes included. The service a command runs for is the one `run` was
given: `current_service()` returns it inside a command.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import click

from .db import Database, DatabaseError, redact
from .migrate import (
    Migration,
    MigrationError,
    chassis_records,
    discover,
    migrate,
    pending,
    runtime_name,
)
from .schemas import GeneratedCodeMissing, endpoints
from .service import Service
from .settings import Settings, SettingsError


@dataclass(frozen=True)
class CommandLine:
    """What `run` hands to the commands (click's context object): the service, and how it
    builds its WSGI app (the service's own `create_app`, with its routes and checks)."""

    service: Service
    create_app: Callable[[], Any] | None = None


def current_service() -> Service:
    """The service the running command is for (set by `run`; a test may pass the Service as
    click's `obj` itself)."""
    context = click.get_current_context()
    return context.find_object(Service) or context.find_object(CommandLine).service


def current_app() -> Any:
    """The WSGI app of the running command's service, built by the service's own `create_app`
    when `run` was given one."""
    from .app import create_app

    command_line = click.get_current_context().find_object(CommandLine)
    if command_line is not None and command_line.create_app is not None:
        return command_line.create_app()
    return create_app(current_service())


def load_or_exit() -> tuple[Settings, Database]:
    """Settings and database for a command, or a clear message and exit status 1."""
    try:
        settings = current_service().load_settings()
    except (SettingsError, GeneratedCodeMissing) as exc:
        raise click.ClickException(str(exc)) from None
    return settings, Database(settings.database_url, base_dir=settings.root)


def database_or_exit() -> Database:
    """The database named by DATABASE_URL (the only setting `migrate` needs), or a clear
    message and exit status 1."""
    service = current_service()
    try:
        url = service.load_database_url()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    return Database(url, base_dir=service.root)


@click.group(help="Run and operate the service.")
def main() -> None:
    pass


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
@click.option("--threads", default=4, show_default=True, type=int, help="Worker threads.")
def serve(host: str, port: int, threads: int) -> None:
    """Serve HTTP with waitress (for local runs and simple VPS setups)."""
    import waitress

    service = current_service()
    try:
        app = current_app()
    except (SettingsError, GeneratedCodeMissing, LookupError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{service.package} listening on http://{host}:{port} (Ctrl+C stops)", err=True)
    # Waitress drops X-Forwarded-For unless told otherwise; the chassis reads it itself, and
    # only as far as TRUSTED_PROXY_HOPS proxies wrote it (ratelimit.client_address).
    trusts_proxies = app.config.get("TRUSTED_PROXY_HOPS", 0) > 0
    waitress.serve(
        app,
        host=host,
        port=port,
        threads=threads,
        ident=service.package,
        clear_untrusted_proxy_headers=not trusts_proxies,
    )


@main.command("migrate")
@click.option("--dry-run", is_flag=True, help="List pending migrations; apply nothing.")
@click.option("--list", "list_all", is_flag=True,
              help="List every migration, applied or pending; apply nothing.")
def migrate_command(dry_run: bool, list_all: bool) -> None:
    """Apply pending migrations: the runtime's (runtime/) first, then the service's (app/,
    from migrations/)."""
    db = database_or_exit()
    root = current_service().root
    try:
        if list_all or dry_run:
            for old in chassis_records(db):
                new = runtime_name(old)
                click.echo(f"rename {old} to {new} (recorded by a chassis-era service)")
            waiting = pending(db, root)
            if list_all:
                for migration in discover(db.dialect.name, root):
                    state = "pending" if migration in waiting else "applied"
                    click.echo(f"{state} {migration.name}")
            else:
                for migration in waiting:
                    click.echo(f"pending {migration.name}")
            click.echo(f"{len(waiting)} pending migration(s){_by_namespace(waiting)}")
            return

        def report(migration: Migration) -> None:
            click.echo(f"applied {migration.name}")

        def report_renamed(old: str, new: str) -> None:
            click.echo(f"renamed {old} to {new} (recorded by a chassis-era service)")

        done = migrate(db, root, on_applied=report, on_renamed=report_renamed)
    except (MigrationError, DatabaseError) as exc:
        raise click.ClickException(str(exc)) from None
    if done:
        click.echo(f"{len(done)} migration(s) applied{_by_namespace(done)}")
    else:
        click.echo("database is up to date")


def _by_namespace(migrations: list[Migration]) -> str:
    """" (runtime/: 2, app/: 1)" for a summary line; empty for no migrations."""
    counts: dict[str, int] = {}
    for migration in migrations:
        namespace = migration.name.partition("/")[0]
        counts[namespace] = counts.get(namespace, 0) + 1
    if not counts:
        return ""
    return " (" + ", ".join(f"{namespace}/: {count}" for namespace, count in counts.items()) + ")"


@main.command()
def check() -> None:
    """Validate settings, reach the database, report pending migrations. Exit 1 on a problem."""
    problems: list[str] = []
    try:
        settings = current_service().load_settings()
    except (SettingsError, GeneratedCodeMissing) as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    for name, value in settings.describe().items():
        click.echo(f"{name}={value}")
    db = Database(settings.database_url, base_dir=settings.root)
    try:
        waiting = pending(db, settings.root)
    except Exception as exc:
        problems.append(f"database {redact(settings.database_url)} does not answer: {exc}")
    else:
        if waiting:
            names = ", ".join(migration.name for migration in waiting)
            command = f"python -m {current_service().package} migrate"
            problems.append(f"{len(waiting)} migration(s) pending ({names}): run `{command}`")
    if problems:
        for problem in problems:
            click.echo(f"problem: {problem}", err=True)
        sys.exit(1)
    click.echo("ok: settings valid, database reachable, schema up to date")


@main.command()
def routes() -> None:
    """List the HTTP endpoints: method, path, status, handler, scopes."""
    try:
        table = endpoints(current_service().model)
    except GeneratedCodeMissing as exc:
        raise click.ClickException(str(exc)) from None
    rows: list[tuple[Any, ...]] = [("METHOD", "PATH", "STATUS", "HANDLER", "SCOPES")]
    rows += [(e.method, e.path, e.status, e.name, " ".join(e.scopes) or "-") for e in table]
    rows += [("GET", "/livez", 200, "(health)", "-"), ("GET", "/readyz", 200, "(health)", "-")]
    widths = [max(len(str(row[column])) for row in rows) for column in range(5)]
    for row in rows:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


@main.command()
@click.option("--max-seconds", type=float, default=55.0, show_default=True,
              help="Stop claiming in time to exit before this budget (for cron every minute).")
@click.option("--forever", is_flag=True, help="Poll until SIGTERM/Ctrl+C (for a VPS service).")
@click.option("--once", is_flag=True, help="Process one batch and exit (tests, debugging).")
@click.option("--batch-size", type=int, default=200, show_default=True,
              help="Messages claimed and handled per transaction.")
@click.option("--lease-seconds", type=float, default=120.0, show_default=True,
              help="How long a claim lasts; a killed worker's messages come back after it.")
@click.option("--poll-seconds", type=float, default=1.0, show_default=True,
              help="Sleep between empty polls with --forever.")
def worker(max_seconds: float, forever: bool, once: bool, batch_size: int,
           lease_seconds: float, poll_seconds: float) -> None:
    """Handle queued messages; overlapping runs are safe. Exits 0 when done."""
    import signal

    from .logs import configure_logging
    from .relay import transports
    from .worker import Worker

    service = current_service()
    settings, db = load_or_exit()
    log = configure_logging(service.package, settings.log_level)
    try:
        catalog = service.catalog
        runner = Worker(
            db, subscribers=service.registry.SUBSCRIBERS, catalog=catalog, settings=settings,
            log=log,
            # The outbox goes to each peer's inbox over HTTP (relay.py), behind its breaker.
            transports=transports(settings, catalog),
            batch_size=batch_size, lease_seconds=lease_seconds,
            method=settings.get("CLAIM_METHOD", "auto"),
            retention_days=settings.get("MESSAGE_RETENTION_DAYS"),
        )
    except (GeneratedCodeMissing, ValueError, LookupError, DatabaseError) as exc:
        raise click.ClickException(str(exc)) from None
    # SIGTERM (systemd, kill) and Ctrl+C: finish the batch in hand, then exit.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: runner.stop())
    try:
        stats = runner.run(max_seconds=None if forever else max_seconds, forever=forever,
                           once=once, poll_seconds=poll_seconds)
    except DatabaseError as exc:  # unreachable database: say so in one line, exit 1
        raise click.ClickException(str(exc)) from None
    if any(stats.as_dict().values()) or once:
        click.echo(" ".join(f"{key}={value}" for key, value in stats.as_dict().items()), err=True)


@main.group("dead-letters")
def dead_letters() -> None:
    """Messages that failed for good (status FAILED) in the queue and the outbox."""


def _selection(ids: tuple[int, ...], message_type: str | None, older_than: str | None,
               everything: bool = True) -> Any:
    from .deadletters import Selection, parse_age

    if not (ids or message_type or older_than or everything):
        raise click.UsageError("name the messages: IDs, --type, --older-than, or --all")
    try:
        age = parse_age(older_than) if older_than else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    return Selection(ids=ids, message_type=message_type, older_than_seconds=age)


_TABLE = click.option("--table", type=click.Choice(["queue", "outbox", "all"]), default=None,
                      help="Which table (default: both; queue when IDs are given).")
_TYPE = click.option("--type", "message_type", help="Only this message type, e.g. order.created.")
_AGE = click.option(
    "--older-than", help="Only those that failed longer ago than this: 30m, 2h, 7d."
)


def _tables(table: str | None, ids: tuple[int, ...]) -> Any:
    from .deadletters import tables

    return tables("queue" if table is None and ids else table)


@dead_letters.command("list")
@_TABLE
@_TYPE
@_AGE
@click.option("--limit", type=int, default=100, show_default=True)
def dead_letters_list(table: str | None, message_type: str | None, older_than: str | None,
                      limit: int) -> None:
    """List dead letters, most recent first."""
    from .deadletters import format_list, list_dead

    _settings, db = load_or_exit()
    rows = list_dead(db, _tables(table, ()), _selection((), message_type, older_than), limit)
    click.echo(format_list(rows))


@dead_letters.command("show")
@click.argument("row_id", type=int)
@click.option("--table", type=click.Choice(["queue", "outbox"]), default="queue",
              show_default=True)
def dead_letters_show(row_id: int, table: str) -> None:
    """Show one message in full: envelope, attempts, last error with its traceback."""
    from .deadletters import format_row, show, tables

    _settings, db = load_or_exit()
    (chosen,) = tables(table)
    row = show(db, chosen, row_id)
    if row is None:
        raise click.ClickException(f"{chosen.name} has no row {row_id}")
    click.echo(format_row(chosen, row))


@dead_letters.command("requeue")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "everything", is_flag=True, help="Every dead letter the filters match.")
@_TABLE
@_TYPE
@_AGE
def dead_letters_requeue(ids: tuple[int, ...], everything: bool, table: str | None,
                         message_type: str | None, older_than: str | None) -> None:
    """Make dead letters NEW again, attempts reset (after fixing the cause)."""
    from .deadletters import requeue

    _settings, db = load_or_exit()
    count = requeue(db, _tables(table, ids), _selection(ids, message_type, older_than, everything))
    click.echo(f"requeued {count} message(s)")


@dead_letters.command("purge")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "everything", is_flag=True, help="Every dead letter the filters match.")
@_TABLE
@_TYPE
@_AGE
def dead_letters_purge(ids: tuple[int, ...], everything: bool, table: str | None,
                       message_type: str | None, older_than: str | None) -> None:
    """Delete dead letters for good."""
    from .deadletters import purge

    _settings, db = load_or_exit()
    count = purge(db, _tables(table, ids), _selection(ids, message_type, older_than, everything))
    click.echo(f"purged {count} message(s)")


@main.command()
@click.option("--reset", "reset_name", metavar="PEER",
              help="Close this peer's breaker by hand (you know it is back).")
def breakers(reset_name: str | None) -> None:
    """List the peers' circuit breakers (breaker.py), or close one."""
    from .breaker import BreakerStore

    settings, _db = load_or_exit()
    store = BreakerStore(settings.database_url, settings.root)
    if reset_name:
        if not store.reset(reset_name):
            raise click.ClickException(f"no breaker named {reset_name!r} (see `breakers`)")
        click.echo(f"breaker {reset_name} closed")
        return
    found = store.states()
    if not found:
        click.echo("no breaker has ever opened or counted a failure")
    for state in found:
        until = f" until {state.open_until:%Y-%m-%d %H:%M:%S}Z" if state.state == "open" else ""
        click.echo(f"{state.name}: {state.state}{until}, {state.failures} failure(s) in a row, "
                   f"last error: {state.last_error or '-'}")


# -- service identity: signing keys and tokens (auth.py, keys.py) -----------------------------


def identity_or_exit() -> tuple[Any, Any]:
    """This service's auth config and key directory, from the identity settings alone (keys can
    be made before the peers' URLs are configured), or a clear message and exit status 1."""
    from .auth import AuthConfig, auth_settings
    from .keys import KeyStore

    service = current_service()
    try:
        values = service.load_only(name for name, *_ in auth_settings(service.root))
        config = AuthConfig.from_settings(values, service.root, service.name)
    except (SettingsError, GeneratedCodeMissing, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    return config, KeyStore(config.keys_dir, service.package)


_ALG = click.option("--alg", type=click.Choice(["EdDSA", "RS256"]), default=None,
                    help="Key algorithm (default: SERVICE_KEY_ALGORITHM, EdDSA).")


@main.group()
def keys() -> None:
    """This service's signing keys (SERVICE_KEYS_DIR), published at /.well-known/jwks.json."""


@keys.command("generate")
@_ALG
def keys_generate(alg: str | None) -> None:
    """Create the first signing key."""
    from .keys import KeyStoreError

    config, store = identity_or_exit()
    try:
        info = store.generate(alg or config.key_algorithm)
    except KeyStoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"signing key {info.kid} ({info.alg}) created in {store.directory}")


@keys.command("rotate")
@_ALG
def keys_rotate(alg: str | None) -> None:
    """Sign with a new key; the previous ones stay published until retired."""
    from .keys import KeyStoreError

    config, store = identity_or_exit()
    try:
        info = store.rotate(alg or config.key_algorithm)
    except KeyStoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"signing key {info.kid} ({info.alg}) created; the previous keys stay published")
    click.echo(
        "retire each one with `keys retire KID` once the tokens it signed have expired", err=True
    )


@keys.command("list")
def keys_list() -> None:
    """List the keys, newest first: signing, published or retired."""
    from .keys import KeyStoreError, format_keys

    _config, store = identity_or_exit()
    try:
        found = store.keys()
    except KeyStoreError as exc:
        raise click.ClickException(str(exc)) from None
    if not found:
        raise click.ClickException(
            f"no keys in {store.directory}: create one with "
            f"`python -m {current_service().package} keys generate`"
        )
    click.echo(format_keys(found))


@keys.command("retire")
@click.argument("kid")
def keys_retire(kid: str) -> None:
    """Stop publishing a key and delete its private key: tokens it signed stop verifying.

    A key id may start with '-' (it is a base64url thumbprint): write `keys retire -- KID`.
    """
    from .keys import KeyStoreError

    _config, store = identity_or_exit()
    try:
        info = store.retire(kid)
    except KeyStoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"key {info.kid} retired")


@main.command()
@click.option("--scope", "scopes", multiple=True,
              help='Scopes to grant, space-separated or repeated: --scope "a:read a:write".')
@click.option("--audience", help="The service the token is for (default: SERVICE_AUDIENCE).")
@click.option("--subject", help="Who the token speaks for (default: this service's issuer).")
@click.option("--ttl", type=int, default=300, show_default=True, help="Lifetime in seconds.")
def token(scopes: tuple[str, ...], audience: str | None, subject: str | None, ttl: int) -> None:
    """Print a token signed by this service, for scripts and tests."""
    from .keys import KeyStoreError, mint_token

    config, store = identity_or_exit()
    try:
        minted = mint_token(
            store,
            issuer=config.issuer,
            audience=audience or config.audience,
            subject=subject or config.issuer,
            scopes=[scope for value in scopes for scope in value.split()],
            ttl=ttl,
        )
    except (KeyStoreError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(minted)

def run(
    service: Service,
    create_app: Callable[[], Any] | None = None,
    commands: Iterable[click.Command] = (),
) -> None:
    """Entry point of `python -m <package>`: the runtime's commands and the service's own
    `commands`, for `service`; `serve` runs the app `create_app()` returns (default: the
    runtime's app of the service)."""
    own = list(commands)
    taken = sorted(command.name for command in own if command.name in main.commands)
    if taken:
        raise SystemExit(
            f"{service.package}: the command(s) {', '.join(taken)} are the runtime's: give yours "
            "another name in app.py"
        )
    group = click.Group(
        main.name, commands=[*main.commands.values(), *own], help=main.help
    )
    group(prog_name=f"python -m {service.package}", obj=CommandLine(service, create_app))
