"""verify_models: every registered model file checked against its digest; --pin records them."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

from aiprod_core.checkpoints import file_sha256, save_checkpoint, sidecar_path
from aiprod_core.config import load_config
from aiprod_core.models.presets import SMALL, TINY
from aiprod_core.vae import CausalVideoVAE


@pytest.fixture
def verify_models(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("maintenance/verify_models.py")


@pytest.fixture
def config_dir(tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repository's config/ (model paths resolve under tmp_path)."""
    for variable in list(os.environ):
        if variable.startswith("AIPROD_"):
            monkeypatch.delenv(variable)
    target = tmp_path / "config"
    shutil.copytree(repo_root / "config", target)
    return target


def model_path(config_dir: Path, name: str) -> Path:
    return load_config(config_dir, env="development", environ={}).model_file(name)


def save_tiny(config_dir: Path) -> Path:
    """A real tiny checkpoint (the tiny preset's VAE) as aiprod-tiny, with its sidecar."""
    torch.manual_seed(0)
    path = model_path(config_dir, "aiprod-tiny")
    save_checkpoint(CausalVideoVAE(TINY.vae), TINY, path, component="vae")
    return path


def save_small_unverified(config_dir: Path) -> Path:
    """A small checkpoint claiming the small preset as aiprod-small, without a sidecar."""
    torch.manual_seed(1)
    path = model_path(config_dir, "aiprod-small")
    save_checkpoint(nn.Linear(4, 4), SMALL, path, component="linear")
    sidecar_path(path).unlink()
    return path


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def run(
    module: ModuleType, config_dir: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    code = module.main(["--config-dir", str(config_dir), "--env", "development", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def statuses(
    module: ModuleType, config_dir: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict[str, dict[str, object]]]:
    code, out, _ = run(module, config_dir, capsys, "--json", *args)
    return code, {entry["name"]: entry for entry in json.loads(out)["models"]}


def test_reports_ok_unverified_and_missing(
    verify_models: ModuleType, config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny, small = save_tiny(config_dir), save_small_unverified(config_dir)
    code, out, _ = run(verify_models, config_dir, capsys)
    assert code == 0
    lines = out.splitlines()
    big = model_path(config_dir, "aiprod-19b")
    assert lines[0] == (
        f"aiprod-19b      {big}  missing: no file there; to obtain it: copy the "
        "released aiprod-19b.safetensors into models/pretrained/"
    )
    assert lines[1] == (
        f"aiprod-small    {small}  unverified: no digest known (not pinned, no sidecar)"
    )
    assert lines[2] == f"aiprod-tiny     {tiny}  ok: matches aiprod-tiny.safetensors.sha256"
    x2 = model_path(config_dir, "aiprod-tiny-x2")
    assert lines[3] == (
        f"aiprod-tiny-x2  {x2}  missing: no file there; to obtain it: train it with "
        "`nox -s demo -- --long` (about 45 minutes on 2 CPU cores)"
    )
    assert lines[4] == "4 model(s): 2 missing, 1 unverified, 1 ok"
    assert "verify_models --pin" in lines[5]

    code, found = statuses(verify_models, config_dir, capsys)
    assert code == 0
    assert {name: entry["status"] for name, entry in found.items()} == {
        "aiprod-19b": "missing",
        "aiprod-small": "unverified",
        "aiprod-tiny": "ok",
        "aiprod-tiny-x2": "missing",
    }
    assert found["aiprod-tiny"]["sha256"] == file_sha256(tiny)
    assert found["aiprod-small"]["sha256"] == file_sha256(small)
    assert found["aiprod-19b"]["sha256"] is None


def test_require_all_fails_on_missing_files(
    verify_models: ModuleType, config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_tiny(config_dir)
    assert run(verify_models, config_dir, capsys, "aiprod-tiny", "--require-all")[0] == 0
    assert run(verify_models, config_dir, capsys, "--require-all")[0] == 1


@pytest.mark.fault("models")
def test_a_bit_flipped_file_fails_its_sidecar(
    verify_models: ModuleType, config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = save_tiny(config_dir)
    recorded = file_sha256(tiny)
    flip_last_byte(tiny)
    code, out, _ = run(verify_models, config_dir, capsys, "aiprod-tiny")
    assert code == 1
    assert out.splitlines()[0] == (
        f"aiprod-tiny  {tiny}  MISMATCH: aiprod-tiny.safetensors.sha256 records {recorded} but "
        f"the file has {file_sha256(tiny)}; the file is corrupt or was replaced: restore it, or "
        "if it was replaced on purpose delete aiprod-tiny.safetensors.sha256"
    )


@pytest.mark.fault("models")
def test_a_pinned_digest_is_checked(
    verify_models: ModuleType, config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = save_tiny(config_dir)
    sidecar_path(tiny).unlink()
    digest = file_sha256(tiny)
    base = config_dir / "AIPROD.json"
    data = json.loads(base.read_text())
    data["models"]["aiprod-tiny"]["sha256"] = digest
    base.write_text(json.dumps(data, indent=2) + "\n")
    code, found = statuses(verify_models, config_dir, capsys, "aiprod-tiny")
    assert (code, found["aiprod-tiny"]["detail"]) == (0, "matches pinned sha256")

    flip_last_byte(tiny)
    pinned_text = base.read_text()
    code, found = statuses(verify_models, config_dir, capsys, "aiprod-tiny", "--pin")
    assert code == 1
    assert found["aiprod-tiny"]["status"] == "mismatch"
    assert found["aiprod-tiny"]["detail"] == (
        f"models.aiprod-tiny.sha256 is {digest} but the file has {file_sha256(tiny)}; the file "
        "is corrupt or not the one expected: obtain it again"
    )
    assert found["aiprod-tiny"]["pinned"] is False
    assert base.read_text() == pinned_text  # a different pinned digest is never replaced


@pytest.mark.fault("models")
@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"not a checkpoint at all", "is truncated or not a safetensors file"),
        (None, "is a folder, not a file"),
    ],
)
def test_a_file_that_is_no_checkpoint(
    verify_models: ModuleType,
    config_dir: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes | None,
    detail: str,
) -> None:
    path = model_path(config_dir, "aiprod-tiny")
    path.parent.mkdir(parents=True)
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    code, found = statuses(verify_models, config_dir, capsys, "aiprod-tiny", "--pin")
    assert code == 1
    assert found["aiprod-tiny"]["status"] == "not-a-checkpoint"
    assert detail in str(found["aiprod-tiny"]["detail"])
    assert found["aiprod-tiny"]["pinned"] is False


@pytest.mark.fault("models")
def test_a_file_of_another_preset_mismatches(
    verify_models: ModuleType, config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = model_path(config_dir, "aiprod-tiny")
    save_checkpoint(nn.Linear(2, 2), SMALL, path, component="linear")
    code, found = statuses(verify_models, config_dir, capsys, "--pin")
    assert code == 1
    assert found["aiprod-tiny"]["detail"] == (
        "holds preset 'small' but models.aiprod-tiny.preset is 'tiny'"
    )
    assert (
        json.loads((config_dir / "AIPROD.json").read_text())["models"]["aiprod-tiny"]["sha256"]
        is None
    )


@pytest.mark.fault("config", guards_data=True)
def test_pin_writes_the_digests_and_nothing_else(
    verify_models: ModuleType, config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny, small = save_tiny(config_dir), save_small_unverified(config_dir)
    base = config_dir / "AIPROD.json"
    before = base.read_text()
    code, out, _ = run(verify_models, config_dir, capsys, "--pin")
    assert code == 0
    assert "ok: matches aiprod-tiny.safetensors.sha256; pinned in AIPROD.json" in out
    assert "unverified: no digest known (not pinned, no sidecar); pinned in AIPROD.json" in out
    # The file lists aiprod-tiny, the missing aiprod-tiny-x2 (left null), aiprod-small, then
    # the missing aiprod-19b (left null).
    expected = before.replace('"sha256": null', f'"sha256": "{file_sha256(tiny)}"', 1)
    head, x2_null, rest = expected.partition('"sha256": null')
    small_pinned = f'"sha256": "{file_sha256(small)}"'
    expected = head + x2_null + rest.replace('"sha256": null', small_pinned, 1)
    assert base.read_text() == expected
    assert expected.count('"sha256": null') == 2
    assert not list(config_dir.glob(".*.tmp"))

    config = load_config(config_dir, env="development", environ={})
    assert config.models["aiprod-small"].sha256 == file_sha256(small)
    code, found = statuses(verify_models, config_dir, capsys, "--pin")
    assert code == 0
    assert found["aiprod-small"]["detail"] == "matches pinned sha256"
    assert found["aiprod-small"]["pinned"] is False  # already pinned: nothing to write
    assert base.read_text() == expected


@pytest.mark.fault("config", guards_data=True)
def test_pin_refuses_a_file_that_fails_its_sidecar(
    verify_models: ModuleType, config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny, small = save_tiny(config_dir), save_small_unverified(config_dir)
    flip_last_byte(tiny)
    code, found = statuses(verify_models, config_dir, capsys, "--pin")
    assert code == 1
    assert (found["aiprod-tiny"]["status"], found["aiprod-tiny"]["pinned"]) == ("mismatch", False)
    assert found["aiprod-small"]["pinned"] is True
    models = json.loads((config_dir / "AIPROD.json").read_text())["models"]
    assert models["aiprod-tiny"]["sha256"] is None
    assert models["aiprod-small"]["sha256"] == file_sha256(small)


@pytest.mark.fault("config", guards_data=True)
def test_pin_adds_a_missing_key_in_the_file_s_own_layout(
    verify_models: ModuleType, tmp_path: Path
) -> None:
    config_file = tmp_path / "AIPROD.json"
    text = (
        '{"models": {"a": {"file": "a.safetensors", "preset": "tiny", "obtain": "x"},\n'
        '            "b": {\n'
        '               "file": "b.safetensors",\n'
        '               "preset": "tiny"\n'
        "            }},\n"
        ' "paths": {}}'
    )
    config_file.write_text(text)
    new_text, refused = verify_models.pin_digests(config_file, {"a": "1" * 64, "b": "2" * 64})
    assert refused == {}
    assert new_text == text.replace(
        '"preset": "tiny", "obtain"', f'"preset": "tiny", "sha256": "{"1" * 64}", "obtain"'
    ).replace('"preset": "tiny"\n', f'"preset": "tiny",\n               "sha256": "{"2" * 64}"\n')


@pytest.mark.fault("config", guards_data=True)
def test_pin_leaves_entries_it_cannot_pin_alone(verify_models: ModuleType, tmp_path: Path) -> None:
    config_file = tmp_path / "AIPROD.json"
    text = '{"models": {"a": {"preset": "tiny", "sha256": "%s"}, "b": {"sha256": null}}}' % (
        "1" * 64
    )
    config_file.write_text(text)
    new_text, refused = verify_models.pin_digests(
        config_file, {"a": "3" * 64, "b": "2" * 64, "c": "4" * 64}
    )
    assert new_text == text.replace("null", f'"{"2" * 64}"')
    assert refused["a"] == (
        f"{config_file}: models.a.sha256 is already {'1' * 64!r} but the file has {'3' * 64}; "
        "not replaced (obtain the file again, or fix the entry)"
    )
    assert refused["c"].startswith(f"{config_file}: has no entry models.c (it comes from an")


@pytest.mark.fault("config")
def test_pin_of_an_entry_from_an_overlay_is_refused_clearly(
    verify_models: ModuleType, config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overlay = config_dir / "env" / "development.yaml"
    overlay.write_text(
        overlay.read_text()
        + "models:\n  extra:\n    file: extra.safetensors\n    location: checkpoints\n"
        "    preset: tiny\n"
    )
    path = model_path(config_dir, "extra")
    save_checkpoint(nn.Linear(2, 2), TINY, path, component="linear")
    before = (config_dir / "AIPROD.json").read_text()
    code, out, err = run(verify_models, config_dir, capsys, "extra", "--pin")
    assert code == 1
    assert "extra  " in out
    assert err == (
        f"error: {config_dir / 'AIPROD.json'}: has no entry models.extra (it comes from an "
        f"environment overlay or variable); record its sha256 {file_sha256(path)} there\n"
    )
    assert (config_dir / "AIPROD.json").read_text() == before


@pytest.mark.fault("cli")
def test_bad_arguments_and_configuration_exit_2(
    verify_models: ModuleType,
    config_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(verify_models, config_dir, capsys, "nope")
    assert code == 2
    assert err == (
        "error: not in the registry (the 'models' section of the configuration): nope; known "
        "models: aiprod-19b, aiprod-small, aiprod-tiny, aiprod-tiny-x2\n"
    )
    (config_dir / "AIPROD.json").write_text("{")
    code, _, err = run(verify_models, config_dir, capsys)
    assert code == 2
    assert err.startswith("error: ")
    assert "AIPROD.json" in err
    assert err.endswith("\n")
    assert err.count("\n") == 1
    code, _, err = run(verify_models, tmp_path / "nowhere", capsys)
    assert code == 2
    with pytest.raises(SystemExit) as exit_info:
        verify_models.main(["--bogus"])
    assert exit_info.value.code == 2


@pytest.mark.fault("config", guards_data=True)
def test_an_unwritable_config_exits_2_and_keeps_the_file(
    verify_models: ModuleType,
    config_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    save_small_unverified(config_dir)
    before = (config_dir / "AIPROD.json").read_text()

    def fail(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    code, _, err = run(verify_models, config_dir, capsys, "--pin")
    assert code == 2
    assert err.startswith(f"error: cannot write {config_dir / 'AIPROD.json'}: ")
    assert "disk full" in err
    assert (config_dir / "AIPROD.json").read_text() == before
    assert not list(config_dir.glob(".*.tmp"))
