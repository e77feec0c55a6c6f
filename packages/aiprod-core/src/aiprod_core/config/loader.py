"""Load the configuration: base JSON <- environment overlay YAML <- AIPROD_* variables.

This is the only place that reads configuration files or AIPROD_* environment variables.
Every problem becomes one ConfigError whose message names the file (or variable), the key
path and what was expected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_origin

from pydantic import BaseModel, ValidationError

from aiprod_core.config.models import AiprodConfig, ModelEntry
from aiprod_core.documents import Format, Limits, parse_yaml, read_mapping
from aiprod_core.errors import ConfigError
from aiprod_core.problems import join_problems, shorten, validation_problems

BASE_FILE = "AIPROD.json"
ENV_DIR = "env"
DEFAULT_ENV = "development"
ENV_PREFIX = "AIPROD_"
NESTED_SEPARATOR = "__"

#: AIPROD_* variables that select or locate configuration instead of overriding a key,
#: and secrets that are read by the components that need them, never stored in config.
RESERVED_VARIABLES = {
    "AIPROD_ENV": "environment overlay to apply (config/env/<name>.yaml)",
    "AIPROD_CONFIG_DIR": "folder holding AIPROD.json (default: config/ of the repository)",
    "AIPROD_API_TOKEN": "bearer token required by the HTTP server when set",
    "AIPROD_WEBHOOK_SECRET": "key of the HMAC-SHA256 signature of the server's webhooks "
    "(X-Aiprod-Signature); unset: webhooks are refused",
    "AIPROD_DATABASE_URL": "PostgreSQL URL of the job store that server replicas share "
    "(postgresql://user:password@host:5432/db); unset: SQLite in the server's videos folder",
    "AIPROD_REQUIRE_POSTGRES": "tests: 1 turns the skip of the PostgreSQL tests (no server "
    "binaries found) into a failure; .ci/run sets it",
}

KeyPath = tuple[str, ...]

_ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: An AIPROD_* variable's value is one scalar: small and flat.
_SCALAR_LIMITS = Limits(max_bytes=64 * 1024, max_depth=4, max_nodes=1000)


def api_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The HTTP server's bearer token ($AIPROD_API_TOKEN), or None when unset or empty.

    Secrets are never part of the configuration files; this is the one place they are read.
    """
    environ = os.environ if environ is None else environ
    token = environ.get("AIPROD_API_TOKEN", "").strip()
    return token or None


def database_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The job store's PostgreSQL URL ($AIPROD_DATABASE_URL), or None when unset or empty.

    A secret (it holds the password): read here, never from configuration files or manifests.
    None means the server's embedded default, SQLite in its videos folder.
    """
    environ = os.environ if environ is None else environ
    url = environ.get("AIPROD_DATABASE_URL", "").strip()
    return url or None


def webhook_secret(environ: Mapping[str, str] | None = None) -> str | None:
    """The key the server signs its webhooks with ($AIPROD_WEBHOOK_SECRET), or None when unset
    or empty (then the server refuses requests that ask for a webhook).

    A secret shared with the receivers: read here, never from configuration files or manifests.
    """
    environ = os.environ if environ is None else environ
    secret = environ.get("AIPROD_WEBHOOK_SECRET", "").strip()
    return secret or None


def find_config_dir(start: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The config folder: $AIPROD_CONFIG_DIR, else the nearest ``config/AIPROD.json`` upwards."""
    environ = os.environ if environ is None else environ
    explicit = environ.get("AIPROD_CONFIG_DIR")
    if explicit:
        folder = Path(explicit).expanduser().resolve()
        if not (folder / BASE_FILE).is_file():
            raise ConfigError(
                f"AIPROD_CONFIG_DIR={explicit}: no {BASE_FILE} there; expected a folder "
                f"holding {BASE_FILE} and env/<name>.yaml"
            )
        return folder
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "config" / BASE_FILE
        if candidate.is_file():
            return candidate.parent
    raise ConfigError(
        f"config/{BASE_FILE} not found in {here} or any parent folder; run from the "
        f"repository or set AIPROD_CONFIG_DIR to the folder holding {BASE_FILE}"
    )


def available_envs(config_dir: Path) -> list[str]:
    """Environment names, from the overlay files in ``config_dir/env``."""
    return sorted(
        p.stem
        for p in (config_dir / ENV_DIR).glob("*.yaml")
        if _ENV_NAME.fullmatch(p.stem) and p.is_file()
    )


def overlay_file(config_dir: Path, env: str) -> Path:
    """``config_dir/env/<env>.yaml`` for an environment that exists there, else a ConfigError.

    ``env`` is a name, never a path: anything but letters, digits, ``-`` and ``_``, or a
    name without its overlay file, is refused, listing the environments there are.
    """
    known = available_envs(config_dir)
    listed = ", ".join(known) or "(none)"
    if not _ENV_NAME.fullmatch(env):
        raise ConfigError(
            f"AIPROD_ENV={shorten(env)} is not an environment name (names are letters, "
            f"digits, '-' and '_'; no paths); expected one of: {listed}"
        )
    if env not in known:
        raise ConfigError(
            f"AIPROD_ENV={env!r} is not a known environment (no {ENV_DIR}/{env}.yaml in "
            f"{_display(config_dir)}); expected one of: {listed}"
        )
    return config_dir / ENV_DIR / f"{env}.yaml"


def load_config(
    config_dir: Path | None = None,
    env: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> AiprodConfig:
    """Load, merge and validate the configuration of one environment.

    ``env`` defaults to $AIPROD_ENV, then ``development``. ``environ`` defaults to the
    process environment; tests pass their own mapping.
    """
    environ = os.environ if environ is None else environ
    config_dir = find_config_dir(environ=environ) if config_dir is None else config_dir
    env = env or environ.get("AIPROD_ENV") or DEFAULT_ENV

    base_path = config_dir / BASE_FILE
    merged = _read_mapping(base_path, "json")
    origins: dict[KeyPath, str] = dict.fromkeys(_leaf_paths(merged), _display(base_path))

    overlay_path = overlay_file(config_dir, env)
    overlay = _read_mapping(overlay_path, "yaml")
    _deep_merge(merged, overlay, origins, _display(overlay_path), ())

    for variable, key_path, value in _environment_overrides(environ, merged):
        _set_key(merged, key_path, value)
        origins[key_path] = f"environment variable {variable}"

    try:
        config = AiprodConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origins, _display(base_path))) from None
    config._root = config_dir.resolve().parent
    config._env = env
    return config


def _display(path: Path) -> str:
    """A path as users should read it: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _read_mapping(path: Path, fmt: Format) -> dict[str, Any]:
    """A configuration file's top-level mapping, read within the document bounds."""
    return read_mapping(path, fmt, where=_display(path), error=ConfigError)


def _leaf_paths(data: Mapping[str, Any], prefix: KeyPath = ()) -> list[KeyPath]:
    paths: list[KeyPath] = []
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping) and value:
            paths.extend(_leaf_paths(value, path))
        else:
            paths.append(path)
    return paths


def _deep_merge(
    target: dict[str, Any],
    overlay: Mapping[str, Any],
    origins: dict[KeyPath, str],
    source: str,
    prefix: KeyPath,
) -> None:
    """Merge ``overlay`` into ``target`` in place; mappings merge, anything else replaces."""
    for key, value in overlay.items():
        path = (*prefix, str(key))
        current = target.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            _deep_merge(current, value, origins, source, path)
            continue
        target[key] = value
        for known in [p for p in origins if p[: len(path)] == path]:
            del origins[known]
        if isinstance(value, Mapping) and value:
            origins.update(dict.fromkeys(_leaf_paths(value, path), source))
        else:
            origins[path] = source


def _environment_overrides(
    environ: Mapping[str, str], merged: Mapping[str, Any]
) -> list[tuple[str, KeyPath, Any]]:
    """AIPROD_SECTION__KEY=value pairs as (variable, key path, parsed value), sorted."""
    overrides = []
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable in RESERVED_VARIABLES:
            continue
        body = variable[len(ENV_PREFIX) :]
        if NESTED_SEPARATOR not in body:
            reserved = ", ".join(sorted(RESERVED_VARIABLES))
            raise ConfigError(
                f"environment variable {variable}: not a known AIPROD variable; expected one "
                f"of {reserved}, or AIPROD_<SECTION>__<KEY> to override a config key "
                f"(for example AIPROD_SERVING__PORT)"
            )
        key_path = _match_key_path(variable, body.split(NESTED_SEPARATOR), merged)
        overrides.append((variable, key_path, _parse_scalar(environ[variable])))
    return overrides


def _match_key_path(variable: str, parts: list[str], merged: Mapping[str, Any]) -> KeyPath:
    """Map upper-case variable parts onto config keys ('-' and '_' compare equal).

    Sections of the schema offer their declared fields (set in a file or not); free-form
    mappings such as the model registry offer the names the files define.
    """
    schema: type[BaseModel] | None = AiprodConfig
    node: Any = merged
    path: list[str] = []
    for part in parts:
        if schema is not None:
            candidates = [field.alias or name for name, field in schema.model_fields.items()]
        elif isinstance(node, Mapping):
            candidates = [str(key) for key in node]
        else:
            raise ConfigError(
                f"environment variable {variable}: {'.'.join(path)} is not a section, so it "
                f"has no key {part.lower()!r}"
            )
        wanted = part.lower().replace("-", "_")
        matches = [key for key in candidates if key.lower().replace("-", "_") == wanted]
        if not matches:
            where = ".".join(path) or "the top level"
            known = ", ".join(sorted(candidates)) or "(none)"
            raise ConfigError(
                f"environment variable {variable}: unknown key {part.lower()!r} in {where}; "
                f"expected one of: {known}"
            )
        key = matches[0]
        path.append(key)
        if schema is not None:
            schema, node = _descend(schema, key, node)
        else:
            schema, node = _descend_entry(node[key])
    return tuple(path)


def _descend(schema: type[BaseModel], key: str, node: Any) -> tuple[type[BaseModel] | None, Any]:
    """The schema and data one level below ``key`` of a pydantic section."""
    name = next(n for n, f in schema.model_fields.items() if (f.alias or n) == key)
    annotation = schema.model_fields[name].annotation
    child = node.get(key) if isinstance(node, Mapping) else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, child if isinstance(child, Mapping) else {}
    if get_origin(annotation) is dict:
        return None, child if isinstance(child, Mapping) else {}
    return None, _SCALAR


def _descend_entry(child: Any) -> tuple[type[BaseModel] | None, Any]:
    """Inside a free-form mapping every value is a registry entry."""
    return (ModelEntry, child) if isinstance(child, Mapping) else (None, _SCALAR)


_SCALAR = object()


def _parse_scalar(text: str) -> Any:
    """Read a variable's value as a YAML scalar (so 8000 is an int, true a bool)."""
    try:
        value = parse_yaml(text, "value", limits=_SCALAR_LIMITS, error=ConfigError)
    except ConfigError:
        return text
    return value if isinstance(value, (str, int, float, bool)) or value is None else text


def _set_key(data: dict[str, Any], key_path: KeyPath, value: Any) -> None:
    node = data
    for key in key_path[:-1]:
        node = node.setdefault(key, {})
    node[key_path[-1]] = value


def _origin(loc: KeyPath, origins: Mapping[KeyPath, str], default: str) -> str:
    """The file or variable that set ``loc`` (or the closest enclosing key)."""
    for length in range(len(loc), 0, -1):
        prefix = loc[:length]
        if prefix in origins:
            return origins[prefix]
        below = {src for path, src in origins.items() if path[:length] == prefix}
        if len(below) == 1:
            return below.pop()
    return default


def _describe(exc: ValidationError, origins: Mapping[KeyPath, str], default: str) -> str:
    problems = validation_problems(
        exc, unknown="unknown key (not part of the configuration schema)"
    )
    lines = [
        f"{_origin(problem.loc, origins, default)}: {problem.key or '(top level)'}: "
        f"{problem.message}"
        for problem in problems
    ]
    return join_problems("invalid configuration", lines, single_line=False)
