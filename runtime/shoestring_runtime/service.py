# Internal: a service uses what shoestring_runtime exports (README.md); this may change.
"""`Service`: the service the chassis runs, as its own wiring describes it.

The package's `__init__.py` builds one from its own folder and passes it on:

    SERVICE = Service(package=__name__, folder=Path(__file__).resolve().parent)
    app = create_app(SERVICE)          # the WSGI app (passenger_wsgi.py, `serve`)
    run(SERVICE)                       # the command line (`python -m <package>`)

Everything the chassis needs to know about the service comes from here: its folder (the root,
where `.env`, `migrations/` and `var/` are), the import name of its package, and what
`shoestring generate` wrote into `<package>/_generated/` (the spec model, the registry of
handlers, the peers' clients, the converters). Each is read once, on first use, and kept by the
object, not by the process: two services (or a test's own) can live side by side.
"""

from __future__ import annotations

import functools
import importlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import EllipsisType, MappingProxyType, ModuleType
from typing import Any

from . import auth, idempotency, peers, ratelimit
from .events import Catalog
from .schemas import GeneratedCodeMissing, check_registry_format
from .settings import Setting, Settings, SettingsError, core_settings, load, spec_setting


class Service:
    """One generated service: where it lives and what was generated for it."""

    def __init__(self, package: str, folder: Path) -> None:
        """`package` is the import name of the service's package, `folder` its directory (the
        service's root is the folder above it)."""
        self.package = package
        self.package_dir = folder
        self.root = folder.parent
        self.generated_dir = folder / "_generated"
        self.env_file = self.root / ".env"

    def __repr__(self) -> str:
        return f"Service({self.package!r}, {self.package_dir})"

    @functools.cached_property
    def model(self) -> dict[str, Any]:
        """The spec model from `_generated/service.json`; `RegistryFormatUnknown` (a
        GeneratedCodeMissing) when another version of the generator wrote it in a format this
        runtime does not read. Everything that reads `_generated/` (the app, the CLI's commands
        but `migrate`, the worker) reads this first, so they all refuse such a service at start."""
        from . import __version__  # the package, fully imported by the time a service is read

        path = self.generated_dir / "service.json"
        try:
            model = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GeneratedCodeMissing(
                f"{path} is missing: run `shoestring generate` in {self.root} "
                "(it writes the endpoint table and schemas from service.yaml)"
            ) from None
        except (OSError, ValueError) as exc:
            raise GeneratedCodeMissing(
                f"{path} cannot be read ({exc}): run `shoestring generate` to rewrite it"
            ) from exc
        if not isinstance(model, dict):
            raise GeneratedCodeMissing(
                f"{path} holds no spec model: run `shoestring generate` to rewrite it"
            )
        check_registry_format(model, path, self.root, __version__)
        return model

    @property
    def name(self) -> str:
        """The service's name in its spec: its token issuer and audience, its messages' source."""
        return str(self.model["service"]["name"])

    @functools.cached_property
    def registry(self) -> ModuleType:
        """`_generated/registry.py` (HANDLERS, SUBSCRIBERS), which imports the user's handler
        modules."""
        return self.generated("registry")

    @functools.cached_property
    def catalog(self) -> Catalog:
        """The messages this service publishes and subscribes to."""
        return Catalog.load(self.model, converters=self.converters)

    def converters(self) -> Mapping[tuple[str, int, int], Any]:
        """CONVERTERS from `_generated/converters.py` (it imports the user's converter modules);
        imported on first use, when a message is published under two versions."""
        return self.generated("converters").CONVERTERS

    def generated(self, name: str) -> ModuleType:
        """The module `_generated/<name>.py`; a clear GeneratedCodeMissing when the generator
        has not run."""
        self.model  # noqa: B018 - refuses a `_generated/` of a format this runtime cannot read
        try:
            return importlib.import_module(f"{self.package}._generated.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[-1] in ("_generated", name):
                raise GeneratedCodeMissing(
                    f"{self.generated_dir / (name + '.py')} is missing: run `shoestring "
                    "generate` in the service's folder"
                ) from exc
            raise

    # -- settings -------------------------------------------------------------------------------

    def setting_rules(self) -> list[Setting]:
        """Every setting the chassis reads: the general ones (settings.py), then each feature's,
        as its module declares them."""
        rules = core_settings(self.package)
        # Service identity and token verification (auth.py documents each key).
        rules += [Setting(*entry) for entry in auth.auth_settings(self.root)]
        # Rate limits (ratelimit.py) and idempotency keys (idempotency.py).
        features = ratelimit.RATE_LIMIT_SETTINGS + idempotency.IDEMPOTENCY_SETTINGS
        rules += [Setting(*entry) for entry in features]
        # Calls to peers: timeouts, retries, the relay's batches, circuit breakers (peers.py).
        rules += [Setting(*entry) for entry in peers.PEER_SETTINGS]
        return rules

    def load_settings(
        self,
        environ: Mapping[str, str] | None = None,
        env_file: Path | None | EllipsisType = ...,
        spec_keys: list[str] | None = None,
    ) -> Settings:
        """Every setting, checked; one `SettingsError` lists every problem.

        `environ` defaults to `os.environ`; `env_file` (default: the service's `.env`; None reads
        no file) fills in keys the environment lacks; `spec_keys` defaults to the keys the spec
        adds (`_generated/service.json`).
        """
        env_file = self._env_file(env_file)
        if spec_keys is None:
            spec_keys = list(self.model.get("settings", []))
        chassis = self.setting_rules()
        values = load(chassis + [spec_setting(name) for name in spec_keys], environ, env_file)
        if values["SERVICE_ISSUER"]:
            problem = auth.issuer_problem(values["SERVICE_ISSUER"], self.name)
            if problem is not None:
                raise SettingsError([problem], env_file)
        return Settings(
            service=self,
            database_url=values["DATABASE_URL"],
            log_level=values["LOG_LEVEL"],
            max_body_bytes=values["MAX_BODY_BYTES"],
            values=MappingProxyType(values),
            secrets=frozenset(rule.name for rule in chassis if rule.secret),
        )

    def load_database_url(
        self, environ: Mapping[str, str] | None = None, env_file: Path | None | EllipsisType = ...
    ) -> str:
        """DATABASE_URL alone, checked: for `migrate`, so a peer URL not configured yet does not
        stop a schema migration."""
        return self.load_only(["DATABASE_URL"], environ, env_file)["DATABASE_URL"]

    def load_only(
        self,
        names: Iterable[str],
        environ: Mapping[str, str] | None = None,
        env_file: Path | None | EllipsisType = ...,
    ) -> dict[str, Any]:
        """Some chassis settings alone, checked (for `keys` and `token`)."""
        return load(self.setting_rules(), environ, self._env_file(env_file), only=names)

    def _env_file(self, env_file: Path | None | EllipsisType) -> Path | None:
        return self.env_file if env_file is ... else env_file
