"""The bounded YAML/JSON reader: what it accepts, and the one-line errors of what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiprod_core.documents import (
    DocumentError,
    Limits,
    document_problem,
    parse_json,
    parse_yaml,
    read_document,
    read_mapping,
)
from aiprod_core.errors import ConfigError


def test_ordinary_documents_parse_as_usual() -> None:
    text = "a: &x {b: [1, 2]}\nc: *x\nd: {<<: *x, e: 3}\n"
    assert parse_yaml(text, "t.yaml") == {
        "a": {"b": [1, 2]},
        "c": {"b": [1, 2]},
        "d": {"b": [1, 2], "e": 3},
    }
    assert parse_json('{"a": [1, {"b": null}]}', "t.json") == {"a": [1, {"b": None}]}
    assert parse_yaml("", "empty.yaml") is None


def test_limits_are_exact_at_the_boundary() -> None:
    limits = Limits(max_depth=3, max_nodes=7)
    assert parse_json("[[[1]]]", "ok", limits=limits) == [[[1]]]
    with pytest.raises(DocumentError, match=r"ok: nested more than 3 levels deep"):
        parse_json("[[[[1]]]]", "ok", limits=limits)
    assert parse_yaml("[[[1]]]", "ok", limits=limits) == [[[1]]]
    with pytest.raises(DocumentError, match=r"nested more than 3 levels deep"):
        parse_yaml("[[[[1]]]]", "ok", limits=limits)
    # 1 list + 3 items, then an alias to it twice: 1 + 4 + 4 = 9 values > 7.
    with pytest.raises(DocumentError, match=r"expands to more than 7 values"):
        parse_yaml("a: &a [1, 2, 3]\nb: *a\n", "y", limits=limits)


@pytest.mark.fault("config")
def test_alias_expansion_is_measured_without_building_it() -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 30)]
    with pytest.raises(DocumentError) as info:
        parse_yaml("\n".join(levels), "bomb.yaml")
    assert str(info.value).startswith("bomb.yaml: expands to more than 200000 values")
    assert "line " in str(info.value)


def test_errors_use_the_callers_class_and_keep_the_problem() -> None:
    with pytest.raises(ConfigError) as info:
        parse_json("{", "base.json", error=ConfigError)
    assert str(info.value) == (
        "base.json: invalid JSON at line 1 column 2: "
        "Expecting property name enclosed in double quotes"
    )
    assert document_problem(info.value).startswith("invalid JSON at line 1 column 2")


@pytest.mark.fault("files")
def test_files_are_bounded_before_they_are_read_whole(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 2048)
    with pytest.raises(DocumentError, match=r"big.json: is larger than 1024 bytes"):
        read_document(big, "json", limits=Limits(max_bytes=1024))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(DocumentError, match=r"binary.yaml: cannot be read: it is not UTF-8"):
        read_document(binary, "yaml")
    with pytest.raises(DocumentError, match=r"missing.yaml: file not found"):
        read_document(tmp_path / "missing.yaml", "yaml")
    with pytest.raises(DocumentError, match=r"cannot be read: it is a folder"):
        read_document(tmp_path, "yaml")


def test_read_mapping_wants_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n")
    with pytest.raises(DocumentError, match=r"list.yaml: expected a mapping .* got list"):
        read_mapping(path, "yaml")
    path.write_text("")
    assert read_mapping(path, "yaml") == {}


def test_yaml_syntax_errors_give_the_position() -> None:
    with pytest.raises(
        DocumentError, match=r"t.yaml: invalid YAML at line 2 column 2: expected ',' or ']'"
    ):
        parse_yaml("a: [1\nb: 2\n", "t.yaml")
