"""Load the configuration: base JSON <- environment overlay YAML <- AIPROD_* variables.

This is the only place that reads configuration files or AIPROD_* environment variables.
Every problem becomes one ConfigError whose message names the file (or variable), the key
path and what was expected.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from aiprod_core.config.models import AiprodConfig, ModelEntry
from aiprod_core.errors import ConfigError

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
}

KeyPath = tuple[str, ...]


def api_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The HTTP server's bearer token ($AIPROD_API_TOKEN), or None when unset or empty.

    Secrets are never part of the configuration files; this is the one place they are read.
    """
    environ = os.environ if environ is None else environ
    token = environ.get("AIPROD_API_TOKEN", "").strip()
    return token or None


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
    return sorted(p.stem for p in (config_dir / ENV_DIR).glob("*.yaml"))


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
    merged = _read_mapping(base_path, _parse_json)
    origins: dict[KeyPath, str] = dict.fromkeys(_leaf_paths(merged), _display(base_path))

    overlay_path = config_dir / ENV_DIR / f"{env}.yaml"
    if not overlay_path.is_file():
        known = ", ".join(available_envs(config_dir)) or "(none)"
        raise ConfigError(
            f"AIPROD_ENV={env!r} is not a known environment: {_display(overlay_path)} does "
            f"not exist; expected one of: {known}"
        )
    overlay = _read_mapping(overlay_path, _parse_yaml)
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


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        position = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML{position}: {problem}") from None


def _read_mapping(path: Path, parse: Any) -> dict[str, Any]:
    where = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot be read: {exc}") from None
    data = parse(text, where)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: expected a mapping of keys at the top level, got {type(data).__name__}"
        )
    return data


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
        value = yaml.safe_load(text)
    except yaml.YAMLError:
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
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        key = ".".join(loc) or "(top level)"
        source = _origin(loc, origins, default)
        if error["type"] == "extra_forbidden":
            problem = "unknown key (not part of the configuration schema)"
        elif error["type"] == "missing":
            problem = "required key is missing"
        else:
            problem = f"{error['msg']}, got {error.get('input')!r}"
        lines.append(f"{source}: {key}: {problem}")
    count = len(lines)
    header = "invalid configuration" + (f" ({count} problems)" if count > 1 else "")
    return header + ":\n  " + "\n  ".join(lines)
