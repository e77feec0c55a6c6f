"""scripts/data/compute_latents.py: end to end on real clips, resume, bad items, errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from aiprod_core.checkpoints import save_checkpoint
from aiprod_core.models import build_model, get_preset
from aiprod_core.vae import CausalVideoVAE, DiagonalGaussian
from aiprod_pipelines.video_io import write_video
from aiprod_trainer import ManifestRecord, load_manifest, write_manifest
from aiprod_trainer.data.clip_dataset import load_clip
from aiprod_trainer.data.latent_cache import META_FILE, LatentCache
from aiprod_trainer.data.latent_pairs import paired_dataset

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 210), "white": (240,) * 3}


@pytest.fixture
def script(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("data/compute_latents.py")


def make_dataset(folder: Path, extra: Sequence[ManifestRecord] = ()) -> Path:
    """Four real 16x16, 5-frame mp4 clips of a square moving over a coloured background."""
    records = []
    for step, (name, colour) in enumerate(COLOURS.items()):
        frames = np.empty((5, 16, 16, 3), dtype=np.uint8)
        frames[:] = colour
        for t in range(5):
            frames[t, 4:10, t + step : t + step + 6] = 255 - np.array(colour, dtype=np.uint8)
        write_video(folder / "clips" / f"{name}.mp4", frames, fps=8)
        records.append(
            ManifestRecord(
                media=f"clips/{name}.mp4",
                caption=f"a square moving right on a {name} background",
                width=16,
                height=16,
                frames=5,
                fps=8.0,
            )
        )
    return write_manifest([*records, *extra], folder / "train.jsonl")


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return make_dataset(tmp_path)


@pytest.fixture
def encode_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the clips of every VAE encode call (the list holds each call's batch size)."""
    calls: list[int] = []
    real = CausalVideoVAE.encode

    def counting(self: CausalVideoVAE, video: torch.Tensor) -> DiagonalGaussian:
        calls.append(video.shape[0])
        return real(self, video)

    monkeypatch.setattr(CausalVideoVAE, "encode", counting)
    return calls


def base_args(manifest: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "--manifest", str(manifest), "--cache", str(cache), "--preset", "tiny",
        "--random-weights", "--device", "cpu", *extra,
    ]  # fmt: skip


def run_json(
    script: ModuleType, capsys: pytest.CaptureFixture[str], args: list[str], expected_rc: int = 0
) -> dict[str, Any]:
    assert script.main([*args, "--json"]) == expected_rc
    return json.loads(capsys.readouterr().out)


def test_end_to_end_stores_the_vae_mean_and_text_embeddings(
    script: ModuleType, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache_dir = tmp_path / "cache"
    args = base_args(manifest, cache_dir, "--batch-size", "3", "--shard-size", "3")
    summary = run_json(script, capsys, args)
    assert summary == {
        "cache": str(cache_dir),
        "manifest": str(manifest),
        "items": 4,
        "already_cached": 0,
        "encoded": 4,
        "shards_written": 2,
        "failed": [],
        "complete": True,
        "interrupted": False,
    }

    cache = LatentCache(cache_dir)
    assert len(cache) == 4
    assert cache.meta.preset == "tiny"
    assert cache.meta.text_encoder == "builtin"
    assert cache.meta.settings["latents"] == "normalized mean"
    assert cache.meta.settings["weights"] == "random-init seed 0"
    assert cache.buckets() == {"16x16x5": [0, 1, 2, 3]}

    config = get_preset("tiny")
    torch.manual_seed(0)  # the script's random init, rebuilt here
    vae = CausalVideoVAE(config.vae).eval()
    records = load_manifest(manifest).records
    for item, record in zip(cache, records, strict=True):
        assert item.id == record.media
        assert item.caption == record.caption
        clip = load_clip(manifest.parent / record.media, record)
        with torch.no_grad():
            expected = vae.encode(clip[None]).mean[0]
        assert item.latents.shape == (8, 3, 4, 4)
        torch.testing.assert_close(item.latents, expected, rtol=1e-4, atol=1e-5)
        text = config.text_encoder
        assert item.text.shape == (text.max_length, text.dim)
        assert item.mask.dtype == torch.bool
        assert int(item.mask.sum()) == min(text.max_length, len(record.caption.encode()) + 2)
    assert not torch.equal(cache[0].latents, cache[1].latents)


def test_finished_cache_rerun_does_nothing(
    script: ModuleType,
    manifest: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    encode_calls: list[int],
) -> None:
    args = base_args(manifest, tmp_path / "cache")
    assert script.main(args) == 0
    assert "encoded 4 of 4 items into 1 new shard(s); 0 were already cached, 0 failed" in (
        capsys.readouterr().out
    )
    assert sum(encode_calls) == 4
    assert script.main(args) == 0
    out = capsys.readouterr().out
    assert (
        out.strip()
        == f"{tmp_path / 'cache'}: complete; all 4 items are already cached, nothing to do"
    )
    assert sum(encode_calls) == 4  # no encoding the second time


def test_interrupted_run_resumes_without_redoing_work(
    script: ModuleType,
    manifest: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    encode_calls: list[int],
) -> None:
    counting = CausalVideoVAE.encode

    def dies_on_the_third_call(self: CausalVideoVAE, video: torch.Tensor) -> DiagonalGaussian:
        if len(encode_calls) == 2:
            raise RuntimeError("killed")
        return counting(self, video)

    monkeypatch.setattr(CausalVideoVAE, "encode", dies_on_the_third_call)
    args = base_args(manifest, tmp_path / "cache", "--batch-size", "1", "--shard-size", "2")
    with pytest.raises(RuntimeError, match="killed"):
        script.main(args)
    assert [item.id for item in LatentCache(tmp_path / "cache")] == [
        "clips/red.mp4",
        "clips/green.mp4",
    ]

    monkeypatch.setattr(CausalVideoVAE, "encode", counting)
    encode_calls.clear()
    summary = run_json(script, capsys, args)
    assert encode_calls == [1, 1]  # only the two missing clips are encoded
    assert (summary["already_cached"], summary["encoded"], summary["complete"]) == (2, 2, True)
    assert len(LatentCache(tmp_path / "cache")) == 4


def test_ctrl_c_keeps_finished_items(
    script: ModuleType,
    manifest: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    encode_calls: list[int],
) -> None:
    counting = CausalVideoVAE.encode

    def interrupted(self: CausalVideoVAE, video: torch.Tensor) -> DiagonalGaussian:
        if len(encode_calls) == 3:
            raise KeyboardInterrupt
        return counting(self, video)

    monkeypatch.setattr(CausalVideoVAE, "encode", interrupted)
    args = base_args(manifest, tmp_path / "cache", "--batch-size", "1", "--shard-size", "10")
    assert script.main(args) == 130
    out = capsys.readouterr().out
    assert "encoded 3 of 4 items into 1 new shard(s)" in out
    assert "interrupted: rerun the same command to encode the rest" in out
    assert len(LatentCache(tmp_path / "cache")) == 3  # the buffered items were flushed


def test_bad_items_are_reported_and_skipped(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "corrupt.mp4").write_bytes(b"\x00" * 64)
    extra = [
        ManifestRecord(
            media="clips/odd.mp4", caption="odd", width=18, height=16, frames=4, fps=8.0
        ),
        ManifestRecord(
            media="clips/corrupt.mp4", caption="bad", width=16, height=16, frames=5, fps=8.0
        ),
        ManifestRecord(
            media="clips/missing.mp4", caption="gone", width=16, height=16, frames=5, fps=8.0
        ),
    ]
    manifest = make_dataset(tmp_path, extra)
    assert script.main(base_args(manifest, tmp_path / "cache", "--json")) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert (summary["encoded"], summary["complete"]) == (4, False)
    failed = {entry["media"]: entry["error"] for entry in summary["failed"]}
    assert sorted(failed) == ["clips/corrupt.mp4", "clips/missing.mp4", "clips/odd.mp4"]
    assert "frames=4 does not fit temporal_compression=2" in failed["clips/odd.mp4"]
    assert "width=18 is not a positive multiple of spatial_compression=4" in failed["clips/odd.mp4"]
    assert str(tmp_path / "clips" / "corrupt.mp4") in failed["clips/corrupt.mp4"]
    assert "no such file" in failed["clips/missing.mp4"]
    assert "skipped clips/corrupt.mp4: cannot read" in captured.err
    assert len(LatentCache(tmp_path / "cache")) == 4


def test_sample_is_reproducible_per_item_and_differs_from_the_mean(
    script: ModuleType, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mean, one, four = tmp_path / "mean", tmp_path / "one", tmp_path / "four"
    run_json(script, capsys, base_args(manifest, mean))
    run_json(script, capsys, base_args(manifest, one, "--sample", "--batch-size", "1"))
    run_json(script, capsys, base_args(manifest, four, "--sample", "--batch-size", "4"))
    for a, b, m in zip(LatentCache(one), LatentCache(four), LatentCache(mean), strict=True):
        torch.testing.assert_close(a.latents, b.latents, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(a.latents, m.latents)
    assert LatentCache(one).meta.settings["sample_seed"] == 0


def test_checkpoint_weights(
    script: ModuleType, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(7)
    config = get_preset("tiny")
    model = build_model(config).eval()
    model.vae.latent_stats.set(torch.linspace(-0.5, 0.5, 8), torch.linspace(0.5, 2.0, 8))
    checkpoint = tmp_path / "tiny.safetensors"
    digest = save_checkpoint(model, config, checkpoint)
    cache_dir = tmp_path / "cache"
    args = ["--manifest", str(manifest), "--cache", str(cache_dir), "--checkpoint", str(checkpoint)]
    assert run_json(script, capsys, [*args, "--device", "cpu"])["encoded"] == 4

    cache = LatentCache(cache_dir)
    assert cache.meta.settings["weights"] == f"checkpoint sha256:{digest}"
    record = load_manifest(manifest).records[2]
    with torch.no_grad():
        clip = load_clip(manifest.parent / record.media, record)
        raw = model.vae.encode(clip[None]).mean
        expected = (
            (raw - torch.linspace(-0.5, 0.5, 8).view(1, 8, 1, 1, 1))
            / torch.linspace(0.5, 2.0, 8).view(1, 8, 1, 1, 1)
        )[0]  # normalised with the checkpoint's statistics
        text = model.text_encoder.encode([record.caption])
    torch.testing.assert_close(cache[2].latents, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(cache[2].text, text.tokens[0], rtol=1e-4, atol=1e-5)


def test_cache_made_with_other_settings_is_refused(
    script: ModuleType, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_json(script, capsys, base_args(manifest, tmp_path / "cache"))
    assert script.main(base_args(manifest, tmp_path / "cache", "--seed", "1")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'cache' / META_FILE}: this cache was made with")
    assert "settings.weights: cache has 'random-init seed 0', expected 'random-init seed 1'" in err


def test_downscale_caches_the_same_clips_at_half_size(
    script: ModuleType, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full_dir, half_dir = tmp_path / "full", tmp_path / "half"
    run_json(script, capsys, base_args(manifest, full_dir))
    summary = run_json(script, capsys, base_args(manifest, half_dir, "--downscale", "2"))
    assert (summary["encoded"], summary["failed"], summary["complete"]) == (4, [], True)

    half = LatentCache(half_dir)
    assert half.meta.settings["downscale"] == 2
    assert "downscale" not in LatentCache(full_dir).meta.settings
    assert half.buckets() == {"8x8x5": [0, 1, 2, 3]}
    assert [tuple(item.latents.shape) for item in half] == [(8, 3, 2, 2)] * 4

    torch.manual_seed(0)  # the script's random init, rebuilt here
    vae = CausalVideoVAE(get_preset("tiny").vae).eval()
    record = load_manifest(manifest).records[1]
    smaller = record.model_copy(update={"width": 8, "height": 8})
    with torch.no_grad():
        clip = load_clip(manifest.parent / record.media, smaller)
        expected = vae.encode(clip[None]).mean[0]
    torch.testing.assert_close(half[1].latents, expected, rtol=1e-4, atol=1e-5)

    pairs = paired_dataset(LatentCache(full_dir), half, ("data.cache", "data.low_res_cache"))
    assert len(pairs) == 4
    assert pairs[3]["latents"].shape == (8, 3, 4, 4)
    assert torch.equal(pairs[3]["low_res"], half[3].latents)


@pytest.mark.fault("files")
def test_a_cache_made_at_another_scale_is_refused(
    script: ModuleType, manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_json(script, capsys, base_args(manifest, tmp_path / "half", "--downscale", "2"))
    assert script.main(base_args(manifest, tmp_path / "half")) == 2
    assert "settings.downscale: cache has 2, expected None" in capsys.readouterr().err
    assert script.main(base_args(manifest, tmp_path / "half", "--downscale", "4")) == 2
    assert "settings.downscale: cache has 2, expected 4" in capsys.readouterr().err


@pytest.mark.fault("videos")
def test_downscale_skips_sizes_that_do_not_divide_or_fit(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = [
        ManifestRecord(
            media="clips/odd.mp4", caption="odd", width=17, height=16, frames=5, fps=8.0
        ),
        ManifestRecord(
            media="clips/wide.mp4", caption="wide", width=20, height=16, frames=5, fps=8.0
        ),
    ]
    manifest = make_dataset(tmp_path, extra)
    args = base_args(manifest, tmp_path / "half", "--downscale", "2")
    summary = run_json(script, capsys, args, expected_rc=1)
    assert (summary["encoded"], summary["complete"]) == (4, False)
    failed = {entry["media"]: entry["error"] for entry in summary["failed"]}
    assert failed["clips/odd.mp4"] == (
        "width=17 and height=16 must both divide by the downscale factor 2"
    )
    assert failed["clips/wide.mp4"].startswith("at 1/2 size (10x8) the clip does not fit the VAE: ")
    assert (
        "width=10 is not a positive multiple of spatial_compression=4" in (failed["clips/wide.mp4"])
    )


def test_input_errors_exit_2_with_one_message(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.jsonl"
    summary = run_json(script, capsys, base_args(missing, tmp_path / "c"), expected_rc=2)
    assert "manifest not found" in summary["error"]

    manifest = make_dataset(tmp_path)
    args = ["--manifest", str(manifest), "--cache", str(tmp_path / "c")]
    assert script.main([*args, "--preset", "huge", "--random-weights"]) == 2
    assert "unknown model preset 'huge'" in capsys.readouterr().err
    assert script.main([*args, "--checkpoint", str(tmp_path / "no.safetensors")]) == 2
    assert "no.safetensors" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--preset", "tiny"], "add --random-weights"),
        (["--checkpoint", "m.safetensors", "--random-weights"], "goes with --preset"),
        (["--preset", "tiny", "--random-weights", "--batch-size", "0"], "expected an integer >= 1"),
        (["--preset", "tiny", "--random-weights", "--device", "toaster"], "expected 'auto'"),
        (["--preset", "tiny", "--random-weights", "--downscale", "0"], "expected an integer >= 1"),
    ],
)
def test_bad_arguments(
    script: ModuleType, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--manifest", "m.jsonl", "--cache", "c", *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_auto_device_picks_what_is_there(script: ModuleType) -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    args = script.build_parser().parse_args(["--manifest", "m", "--cache", "c", "--preset", "t"])
    assert args.device == expected
