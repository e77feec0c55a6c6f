"""The one reader of YAML and JSON that someone else may have written, within fixed bounds.

Configuration files, training configs, manifests, checkpoint headers, training state and
caches are all parsed here, so one set of limits holds everywhere:

- size: the text is at most ``max_bytes`` (checked before it is read whole);
- depth: mappings and lists nest at most ``max_depth`` levels (no RecursionError, however
  deep the file);
- expansion: a YAML document, with every alias expanded, holds at most ``max_nodes``
  values, and no alias refers to a node that contains it. An "alias bomb" (anchors that
  double at every level) is refused while it is still a few hundred bytes of nodes, before
  any Python object or pydantic model sees it.

Every problem raises the caller's error class (an :class:`AiprodError`) with one line
that names the file, the position when known, and the limit.

    data = read_document(path, "yaml", error=ConfigError)
    header = parse_json(raw, "model.safetensors header", limits=HEADER_LIMITS)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from yaml.composer import Composer
from yaml.events import MappingStartEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, SequenceNode

from aiprod_core.errors import AiprodError
from aiprod_core.problems import clip

Format = Literal["yaml", "json"]
ErrorFactory = Callable[[str], AiprodError]


class DocumentError(AiprodError, ValueError):
    """A YAML or JSON document is unreadable, invalid, or beyond the reader's bounds."""


@dataclass(frozen=True)
class Limits:
    """How large, deep and (through YAML aliases) expanded a document may be."""

    max_bytes: int = 4 * 1024 * 1024
    max_depth: int = 64
    max_nodes: int = 200_000


#: Configuration files, training configs, state and cache indexes.
DEFAULT_LIMITS = Limits()
#: One line of a JSONL manifest.
LINE_LIMITS = Limits(max_bytes=1024 * 1024, max_depth=16, max_nodes=10_000)
#: A safetensors header: safetensors itself caps it at 100 MB; tensors nest 3 levels.
HEADER_LIMITS = Limits(max_bytes=100 * 1024 * 1024, max_depth=8, max_nodes=50_000_000)


class _Refused(Exception):
    """A bound was crossed while composing YAML (turned into the caller's error)."""

    def __init__(self, problem: str, node: Node | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.node = node


def document_problem(exc: BaseException) -> str:
    """What an error raised here says without the leading ``<where>: `` (for callers that
    name the place themselves, such as a manifest line)."""
    return str(getattr(exc, "problem", exc))


def _fail(error: ErrorFactory, where: str, problem: str) -> AiprodError:
    """``error("<where>: <problem>")``, remembering ``problem`` for document_problem."""
    exc = error(f"{where}: {problem}")
    vars(exc)["problem"] = problem
    return exc


def read_document(
    path: Path,
    fmt: Format,
    *,
    where: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    error: ErrorFactory = DocumentError,
) -> Any:
    """The parsed contents of a YAML or JSON file, within ``limits``.

    ``where`` is how the file is named in messages (default: the path as given).
    """
    path = Path(path)
    shown = str(path) if where is None else where
    try:
        with path.open("rb") as stream:
            raw = stream.read(limits.max_bytes + 1)
    except FileNotFoundError:
        raise _fail(error, shown, "file not found") from None
    except IsADirectoryError:
        raise _fail(
            error, shown, f"cannot be read: it is a folder; expected a {fmt.upper()} file"
        ) from None
    except OSError as exc:
        raise _fail(error, shown, f"cannot be read: {exc.strerror or exc}") from None
    if len(raw) > limits.max_bytes:
        raise _fail(
            error,
            shown,
            f"is larger than {limits.max_bytes} bytes, the limit for a "
            f"{fmt.upper()} file read here; expected a smaller file",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(
            error, shown, f"cannot be read: it is not UTF-8 text (byte {exc.start} is not valid)"
        ) from None
    parse = parse_yaml if fmt == "yaml" else parse_json
    return parse(text, shown, limits=limits, error=error)


def read_mapping(
    path: Path,
    fmt: Format,
    *,
    where: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    error: ErrorFactory = DocumentError,
) -> dict[str, Any]:
    """Like :func:`read_document`, for files whose top level is a mapping (empty -> ``{}``)."""
    shown = str(path) if where is None else where
    data = read_document(path, fmt, where=shown, limits=limits, error=error)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _fail(
            error, shown, f"expected a mapping of keys at the top level, got {type(data).__name__}"
        )
    return data


def parse_json(
    text: str | bytes,
    where: str,
    *,
    limits: Limits = DEFAULT_LIMITS,
    error: ErrorFactory = DocumentError,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> Any:
    """Parse JSON text, within ``limits``; ``json.JSONDecodeError`` becomes ``error``."""
    if len(text) > limits.max_bytes:
        raise _fail(
            error, where, f"is larger than {limits.max_bytes} bytes, the limit for JSON read here"
        )
    try:
        data = json.loads(text, object_pairs_hook=object_pairs_hook)
    except json.JSONDecodeError as exc:
        raise _fail(
            error, where, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except UnicodeDecodeError as exc:
        raise _fail(error, where, f"is not UTF-8 text (byte {exc.start} is not valid)") from None
    except RecursionError:
        raise _fail(error, where, _too_deep(limits)) from None
    if _depth(data, limits.max_depth) > limits.max_depth:
        raise _fail(error, where, _too_deep(limits))
    return data


def parse_yaml(
    text: str,
    where: str,
    *,
    limits: Limits = DEFAULT_LIMITS,
    error: ErrorFactory = DocumentError,
) -> Any:
    """Parse one YAML document (safe tags only), within ``limits``."""
    if len(text) > limits.max_bytes:
        raise _fail(
            error, where, f"is larger than {limits.max_bytes} bytes, the limit for YAML read here"
        )
    loader = _BoundedLoader(text, limits)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, limits)
        return loader.construct_document(node)
    except _Refused as exc:
        raise _fail(error, where, f"{exc.problem}{_position(exc.node)}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        position = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise _fail(error, where, f"invalid YAML{position}: {clip(str(problem), 200)}") from None
    except RecursionError:
        raise _fail(error, where, _too_deep(limits)) from None
    finally:
        loader.dispose()


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing to compose nodes deeper than ``max_depth``."""

    def __init__(self, text: str, limits: Limits) -> None:
        super().__init__(text)
        self._limits = limits
        self._level = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        collection = self.check_event(SequenceStartEvent, MappingStartEvent)
        self._level += collection
        try:
            if self._level > self._limits.max_depth:
                raise _Refused(
                    f"nested more than {self._limits.max_depth} levels deep; expected a "
                    f"shallower document",
                    # PyYAML's parser methods carry no annotations.
                    _marked(self.peek_event()),  # type: ignore[no-untyped-call]
                )
            return Composer.compose_node(self, parent, index)
        finally:
            self._level -= collection


class _Marked:
    """A position in the text, for a refusal that happens before a node exists."""

    def __init__(self, mark: Any) -> None:
        self.start_mark = mark


def _marked(event: Any) -> Any:
    return _Marked(getattr(event, "start_mark", None))


def _check_expansion(root: Node, limits: Limits) -> None:
    """Refuse a node graph whose alias expansion is cyclic, too large or too deep.

    Sizes and depths are computed once per node (aliases share nodes), iteratively, so a
    graph that would expand to billions of values is measured in time linear in its
    nodes.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        kids = _children(node)
        if children_done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(kid)] for kid in kids)
            nested = max((depth[id(kid)] for kid in kids), default=0)
            depth[key] = nested + isinstance(node, (SequenceNode, MappingNode))
            if size[key] > limits.max_nodes:
                raise _Refused(
                    f"expands to more than {limits.max_nodes} values through YAML aliases "
                    f"(an alias bomb?); expected a document without repeated alias expansion",
                    node,
                )
            if depth[key] > limits.max_depth:
                raise _Refused(
                    f"nested more than {limits.max_depth} levels deep once its aliases are "
                    "expanded; expected a shallower document",
                    node,
                )
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, True))
        for kid in kids:
            if id(kid) in on_path:
                raise _Refused(
                    "an alias refers to a node that contains it (a self-referencing "
                    "anchor); expected anchors that do not include their own aliases",
                    kid,
                )
            if id(kid) not in size:
                stack.append((kid, False))


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _position(node: Any) -> str:
    mark = getattr(node, "start_mark", None)
    return f" (line {mark.line + 1} column {mark.column + 1})" if mark is not None else ""


def _depth(data: Any, limit: int) -> int:
    """How deep ``data``'s lists and dicts nest, counting no further than ``limit + 1``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


def _too_deep(limits: Limits) -> str:
    return f"nested more than {limits.max_depth} levels deep; expected a shallower document"
