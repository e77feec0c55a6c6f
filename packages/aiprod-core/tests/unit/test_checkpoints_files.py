"""Checkpoint files: bit-exact round trips, metadata, digests, and every broken-file error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from aiprod_core.checkpoints import (
    CheckpointError,
    file_sha256,
    inspect_checkpoint,
    read_checkpoint,
    save_checkpoint,
    sidecar_path,
)
from aiprod_core.checkpoints.header import ALIASES_KEY, CONFIG_KEY, FORMAT_KEY, FORMAT_VERSION
from aiprod_core.errors import AiprodError
from aiprod_core.models.presets import SMALL, TINY


class Mixed(nn.Module):
    """Parameters and buffers of several dtypes, one of them non-contiguous."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.linear = nn.Linear(5, 3)
        self.bf16 = nn.Parameter(torch.randn(4, 6, generator=generator).to(torch.bfloat16))
        self.fp16 = nn.Parameter(torch.randn(7, generator=generator).half())
        self.register_buffer("steps", torch.arange(6, dtype=torch.int64))
        self.register_buffer("flags", torch.tensor([True, False, True]))
        self.register_buffer("transposed", torch.randn(3, 4, generator=generator).t())
        self.register_buffer("empty", torch.zeros(0, 3))


class Tied(nn.Module):
    """Two layers sharing one weight, plus a buffer that is a view of another."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 4, bias=False)
        self.second = nn.Linear(4, 4, bias=False)
        self.second.weight = self.first.weight
        self.register_buffer("table", torch.arange(12.0).reshape(3, 4))
        self.register_buffer("row", self.table[1])


def corrupt(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    sidecar_path(path).unlink(missing_ok=True)
    return path


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Mixed, Path]:
    module = Mixed()
    path = tmp_path / "mixed.safetensors"
    save_checkpoint(module, TINY, path, component="mixed", metadata={"step": "12"})
    return module, path


def test_round_trip_is_bit_exact_for_every_dtype(saved: tuple[Mixed, Path]) -> None:
    module, path = saved
    checkpoint = read_checkpoint(path)
    expected = module.state_dict()
    assert set(checkpoint.tensors) == set(expected)
    for name, tensor in expected.items():
        loaded = checkpoint.tensors[name]
        assert loaded.dtype == tensor.dtype, name
        assert torch.equal(loaded, tensor), name
    assert checkpoint.tensors["bf16"].dtype == torch.bfloat16


def test_config_component_and_metadata_round_trip(saved: tuple[Mixed, Path]) -> None:
    _, path = saved
    checkpoint = read_checkpoint(path)
    assert checkpoint.config == TINY
    assert checkpoint.component == "mixed"
    assert checkpoint.metadata["step"] == "12"
    assert checkpoint.metadata[FORMAT_KEY] == FORMAT_VERSION == "2"
    assert json.loads(checkpoint.metadata[CONFIG_KEY])["preset"] == "tiny"


def test_inspect_reads_the_header_only(saved: tuple[Mixed, Path]) -> None:
    _, path = saved
    info = inspect_checkpoint(path)
    assert info.config == TINY
    assert info.component == "mixed"
    assert info.tensors["bf16"].dtype == "BF16"
    assert info.tensors["bf16"].shape == (4, 6)
    assert info.tensors["empty"].shape == (0, 3)
    assert info.aliases == {}


def test_save_returns_the_digest_and_writes_a_sha256sum_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    digest = save_checkpoint(nn.Linear(2, 2), TINY, path, component="linear")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == file_sha256(path)
    assert sidecar_path(path).read_text() == f"{digest}  m.safetensors\n"
    assert read_checkpoint(path).sha256 == digest


def test_read_verifies_a_given_digest_over_the_sidecar(saved: tuple[Mixed, Path]) -> None:
    _, path = saved
    with pytest.raises(CheckpointError, match=r"sha256 mismatch") as caught:
        read_checkpoint(path, sha256="ab" * 32)
    assert str(path) in str(caught.value)
    assert "ab" * 32 in str(caught.value)
    assert file_sha256(path) in str(caught.value)


@pytest.mark.fault("models")
def test_tampered_data_fails_the_sidecar_check(saved: tuple[Mixed, Path]) -> None:
    _, path = saved
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"sha256 mismatch.*from its sidecar") as caught:
        read_checkpoint(path)
    assert str(path) in str(caught.value)


def test_without_sidecar_or_digest_nothing_is_verified(saved: tuple[Mixed, Path]) -> None:
    _, path = saved
    sidecar_path(path).unlink()
    assert read_checkpoint(path).sha256 is None


def test_tied_weights_are_stored_once_and_views_copied(tmp_path: Path) -> None:
    module = Tied()
    path = tmp_path / "tied.safetensors"
    save_checkpoint(module, TINY, path, component="tied")
    info = inspect_checkpoint(path)
    assert info.aliases == {"second.weight": "first.weight"}
    assert "second.weight" not in info.tensors
    checkpoint = read_checkpoint(path)
    assert checkpoint.tensors["second.weight"] is checkpoint.tensors["first.weight"]
    for name, tensor in module.state_dict().items():
        assert torch.equal(checkpoint.tensors[name], tensor), name


def test_read_casts_floating_tensors_only(saved: tuple[Mixed, Path]) -> None:
    _, path = saved
    checkpoint = read_checkpoint(path, dtype=torch.float16)
    assert checkpoint.tensors["linear.weight"].dtype == torch.float16
    assert checkpoint.tensors["steps"].dtype == torch.int64
    assert checkpoint.tensors["flags"].dtype == torch.bool


def test_loaded_tensors_do_not_write_through_to_the_file(saved: tuple[Mixed, Path]) -> None:
    _, path = saved
    before = path.read_bytes()
    read_checkpoint(path).tensors["linear.weight"].add_(1.0)
    assert path.read_bytes() == before


def test_failed_save_keeps_the_previous_checkpoint_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "model.safetensors"
    save_checkpoint(nn.Linear(3, 3), TINY, path, component="linear")
    before, sidecar_before = path.read_bytes(), sidecar_path(path).read_text()
    real_save = safetensors.torch.save_file

    def save_half_then_crash(
        tensors: dict[str, torch.Tensor], filename: Path, metadata: dict[str, str] | None = None
    ) -> None:
        real_save(tensors, filename, metadata=metadata)
        data = Path(filename).read_bytes()
        Path(filename).write_bytes(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", save_half_then_crash)
    with pytest.raises(OSError, match=r"disk full"):
        save_checkpoint(nn.Linear(3, 3), SMALL, path, component="linear")
    assert path.read_bytes() == before
    assert sidecar_path(path).read_text() == sidecar_before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, sidecar_path(path).name]
    assert read_checkpoint(path).config == TINY


def test_failed_first_save_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(
        tensors: dict[str, torch.Tensor], filename: Path, metadata: dict[str, str] | None = None
    ) -> None:
        Path(filename).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(nn.Linear(3, 3), TINY, tmp_path / "new.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_pickle_names_reserved_keys_and_meta_tensors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"model\.pt: .*\.safetensors"):
        save_checkpoint(nn.Linear(2, 2), TINY, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=r"'aiprod\.config' is reserved"):
        save_checkpoint(
            nn.Linear(2, 2), TINY, tmp_path / "m.safetensors", metadata={CONFIG_KEY: "x"}
        )
    with pytest.raises(CheckpointError, match=r"'step' maps to int"):
        save_checkpoint(
            nn.Linear(2, 2),
            TINY,
            tmp_path / "m.safetensors",
            metadata={"step": 3},  # type: ignore[dict-item]
        )
    with torch.device("meta"):
        ghost = nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match=r"'weight': it is on the meta device"):
        save_checkpoint(ghost, TINY, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.safetensors: checkpoint file not found"):
        read_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match=r"is not a file"):
        inspect_checkpoint(tmp_path)


def test_aiprod_error_is_the_base(tmp_path: Path) -> None:
    with pytest.raises(AiprodError):
        read_checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file(saved: tuple[Mixed, Path]) -> None:
    _, path = saved
    data = path.read_bytes()
    corrupt(path, data[: len(data) - 10])
    with pytest.raises(CheckpointError, match=r"is truncated") as caught:
        read_checkpoint(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("keep", [0, 5, 8, 40], ids=["empty", "5-bytes", "8-bytes", "half-header"])
def test_truncated_inside_the_header(saved: tuple[Mixed, Path], keep: int) -> None:
    _, path = saved
    corrupt(path, path.read_bytes()[:keep])
    with pytest.raises(CheckpointError, match=r"truncated or not a safetensors file") as caught:
        inspect_checkpoint(path)
    assert str(path) in str(caught.value)


def test_cut_in_half_with_its_sidecar_reports_truncation(saved: tuple[Mixed, Path]) -> None:
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{re.escape(str(path))}: is truncated"):
        read_checkpoint(path)


def test_random_bytes(tmp_path: Path) -> None:
    noise = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(1))
    path = corrupt(tmp_path / "noise.safetensors", bytes(noise.to(torch.uint8).tolist()))
    with pytest.raises(
        CheckpointError, match=r"noise\.safetensors: is truncated or not a safetensors"
    ):
        read_checkpoint(path)


@pytest.mark.fault("models")
def test_flipped_header_byte(saved: tuple[Mixed, Path]) -> None:
    _, path = saved
    data = bytearray(path.read_bytes())
    data[8] ^= 0xFF  # the opening brace of the JSON header
    corrupt(path, bytes(data))
    with pytest.raises(
        CheckpointError, match=r"header: .*corrupt or not a safetensors file"
    ) as caught:
        read_checkpoint(path)
    assert str(path) in str(caught.value)


def write_raw(path: Path, header: object, data: bytes = b"") -> Path:
    encoded = json.dumps(header).encode()
    return corrupt(path, len(encoded).to_bytes(8, "little") + encoded + data)


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        ([1, 2], b"", "expected a JSON object"),
        ({"w": {"dtype": "F32", "shape": [1]}}, b"", "bad entry for tensor 'w'"),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"", "bad entry"),
        (
            {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
            b"12",
            "describes 4 bytes .* holds 2",
        ),
        ({"__metadata__": {"a": 1}}, b"", "metadata is not a string mapping"),
    ],
)
def test_malformed_headers(tmp_path: Path, header: object, data: bytes, message: str) -> None:
    path = write_raw(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(CheckpointError, match=message) as caught:
        read_checkpoint(path)
    assert str(path) in str(caught.value)


def test_unexpected_trailing_bytes(saved: tuple[Mixed, Path]) -> None:
    _, path = saved
    corrupt(path, path.read_bytes() + b"junk")
    with pytest.raises(CheckpointError, match=r"4 unexpected bytes after the tensor data"):
        read_checkpoint(path)


def test_bad_tensor_bytes_fall_back_to_a_clear_error(tmp_path: Path) -> None:
    header = {"w": {"dtype": "NOPE", "shape": [1], "data_offsets": [0, 4]}}
    meta = {CONFIG_KEY: TINY.model_dump_json(), FORMAT_KEY: FORMAT_VERSION, "aiprod.component": "x"}
    path = write_raw(tmp_path / "odd.safetensors", {**header, "__metadata__": meta}, b"\0" * 4)
    with pytest.raises(CheckpointError, match=r"odd\.safetensors: corrupt safetensors file"):
        read_checkpoint(path)


def test_plain_safetensors_without_aiprod_metadata(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"w": torch.ones(2)}, path, metadata={"format": "pt"})
    with pytest.raises(
        CheckpointError,
        match=r"foreign\.safetensors: missing metadata aiprod\.config, aiprod\.format, "
        r"aiprod\.component",
    ):
        read_checkpoint(path)


def test_invalid_config_json_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad-config.safetensors"
    broken = TINY.model_dump(mode="json")
    broken["transformer"]["hidden_dim"] = 4
    meta = {
        CONFIG_KEY: json.dumps(broken),
        FORMAT_KEY: FORMAT_VERSION,
        "aiprod.component": "bundle",
    }
    safetensors.torch.save_file({"w": torch.ones(2)}, path, metadata=meta)
    with pytest.raises(
        CheckpointError,
        match=r"bad-config\.safetensors: its aiprod\.config .*transformer\.hidden_dim",
    ):
        read_checkpoint(path)
    path2 = tmp_path / "not-json.safetensors"
    safetensors.torch.save_file({"w": torch.ones(2)}, path2, metadata={**meta, CONFIG_KEY: "{"})
    with pytest.raises(CheckpointError, match=r"not-json\.safetensors: .*not a valid model config"):
        inspect_checkpoint(path2)


def test_unknown_format_and_bad_aliases(tmp_path: Path) -> None:
    meta = {CONFIG_KEY: TINY.model_dump_json(), FORMAT_KEY: "9", "aiprod.component": "bundle"}
    path = tmp_path / "future.safetensors"
    safetensors.torch.save_file({"w": torch.ones(2)}, path, metadata=meta)
    with pytest.raises(CheckpointError, match=r"format '9' is not supported; expected format '2'"):
        read_checkpoint(path)
    for aliases in ("[", '{"a": "missing"}', "[1]"):
        meta = {**meta, FORMAT_KEY: FORMAT_VERSION, ALIASES_KEY: aliases}
        safetensors.torch.save_file({"w": torch.ones(2)}, path, metadata=meta)
        with pytest.raises(CheckpointError, match=r"future\.safetensors: corrupt aiprod\.aliases"):
            read_checkpoint(path)


@pytest.mark.fault("models")
@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt"])
def test_pickle_files_are_refused(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"weights{suffix}"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    for reader in (read_checkpoint, inspect_checkpoint):
        with pytest.raises(CheckpointError, match=r"is a pickle file") as caught:
            reader(path)
        assert str(path) in str(caught.value)
        assert "safetensors" in str(caught.value)


@pytest.mark.fault("models")
def test_pickle_content_under_a_safetensors_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "disguised.safetensors"
    torch.save({"w": torch.ones(2)}, path)
    with pytest.raises(CheckpointError, match=r"disguised\.safetensors: is a pickle file"):
        read_checkpoint(path)
    legacy = tmp_path / "legacy.safetensors"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"is a pickle file"):
        read_checkpoint(legacy)


def test_safetensors_whose_header_length_looks_like_a_pickle_marker_is_read(
    tmp_path: Path,
) -> None:
    """A header of 0x480 bytes starts the file with 0x80 0x04, pickle protocol 4's marker."""
    path = tmp_path / "long-header.safetensors"
    meta = {CONFIG_KEY: TINY.model_dump_json(), FORMAT_KEY: FORMAT_VERSION}
    meta["aiprod.component"] = "bundle"
    meta["padding"] = ""
    size = int.from_bytes(safetensors.torch.save({"w": torch.ones(2)}, metadata=meta)[:8], "little")
    meta["padding"] = "x" * (0x480 - size)
    safetensors.torch.save_file({"w": torch.ones(2)}, path, metadata=meta)
    assert path.read_bytes()[:2] == b"\x80\x04"
    assert read_checkpoint(path).tensors["w"].tolist() == [1.0, 1.0]


def test_allow_pickle_reads_a_weights_only_state_dict(tmp_path: Path) -> None:
    state = Mixed().state_dict()
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    checkpoint = read_checkpoint(path, allow_pickle=True)
    assert checkpoint.config is None
    assert checkpoint.component is None
    assert checkpoint.sha256 is None
    assert set(checkpoint.tensors) == set(state)
    for name, tensor in state.items():
        assert torch.equal(checkpoint.tensors[name], tensor), name
    digest = file_sha256(path)
    assert read_checkpoint(path, allow_pickle=True, sha256=digest).sha256 == digest
    with pytest.raises(CheckpointError, match=r"sha256 mismatch"):
        read_checkpoint(path, allow_pickle=True, sha256="0" * 64)


class Payload:
    """An object that a weights-only unpickler must refuse to build."""


@pytest.mark.fault("models")
def test_allow_pickle_still_refuses_arbitrary_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(1), "obj": Payload()}, path)
    with pytest.raises(
        CheckpointError, match=r"evil\.pt: cannot be read with torch\.load\(weights_only=True\)"
    ):
        read_checkpoint(path, allow_pickle=True)


@pytest.mark.parametrize("content", [[torch.ones(1)], {"w": 1}, {"nested": {"w": torch.ones(1)}}])
def test_allow_pickle_needs_a_flat_state_dict(tmp_path: Path, content: object) -> None:
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=r"odd\.pth: expected a state dict"):
        read_checkpoint(path, allow_pickle=True)


def test_broken_pickle_with_allow_pickle(tmp_path: Path) -> None:
    path = corrupt(tmp_path / "broken.pt", b"")
    with pytest.raises(CheckpointError, match=r"broken\.pt: cannot be read with torch\.load"):
        read_checkpoint(path, allow_pickle=True)


def test_unreadable_file(saved: tuple[Mixed, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _, path = saved

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(
        CheckpointError, match=r"mixed\.safetensors: cannot be read \(Permission denied\)"
    ):
        read_checkpoint(path)
