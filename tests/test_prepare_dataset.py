"""scripts/data/prepare_dataset.py: real videos in several containers and codecs are probed,
bucketed and written; corrupt and truncated files are reported and skipped, never fatal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import av
import av.error
import numpy as np
import pytest

from aiprod_core.atomic import temporary_sibling
from aiprod_pipelines.video_io import read_video
from aiprod_trainer import ManifestRecord, load_manifest, write_manifest

#: (container suffix, encoder, pixel format) tried in order; those this FFmpeg can encode run.
CANDIDATES = [
    ("mp4", "libx264", "yuv420p"),
    ("webm", "libvpx", "yuv420p"),
    ("avi", "mjpeg", "yuvj420p"),
    ("mkv", "ffv1", "yuv420p"),
    ("mov", "prores_ks", "yuv422p10le"),
    ("mp4", "mpeg4", "yuv420p"),
]


def has_encoder(name: str) -> bool:
    if name not in av.codecs_available:
        return False
    try:
        av.Codec(name, "w")
    except (ValueError, av.error.FFmpegError):
        return False
    return True


AVAILABLE = [candidate for candidate in CANDIDATES if has_encoder(candidate[1])]


def encode(path: Path, codec: str, pix_fmt: str, count: int, width: int, height: int) -> Path:
    """A clip of a white square on grey with a green middle column, ``count`` frames at 12 fps."""
    frames = np.full((count, height, width, 3), 90, dtype=np.uint8)
    frames[:, :, width // 2 - 2 : width // 2 + 2] = (40, 200, 40)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(12))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 12)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture
def script(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("data/prepare_dataset.py")


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    """A folder of captioned clips in every available codec, plus a corrupt and a truncated one.

    Clip sizes differ per codec (64x48, 48x64, ...) so each lands in a known bucket.
    """
    folder = tmp_path / "videos"
    (folder / "more").mkdir(parents=True)
    sizes = [(64, 48), (48, 64), (80, 48), (64, 64), (96, 48), (32, 32)]
    for index, ((suffix, codec, pix_fmt), (width, height)) in enumerate(
        zip(AVAILABLE, sizes, strict=False)
    ):
        where = folder / "more" if index % 2 else folder
        encode(where / f"{codec}.{suffix}", codec, pix_fmt, 14, width, height)
        (where / f"{codec}.txt").write_text(f"a clip encoded with {codec}", encoding="utf-8")
    (folder / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    whole = encode(tmp_path / "whole.mp4", *AVAILABLE[0][1:], 14, 64, 48)
    data = whole.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "README.txt").write_text("not a video and not a caption", encoding="utf-8")
    return folder


def test_at_least_three_container_codec_pairs() -> None:
    assert len(AVAILABLE) >= 3, AVAILABLE


def test_folder_of_codecs_is_prepared_and_bad_files_are_reported(
    script: ModuleType, videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "prepared"
    buckets = ["--bucket", "32x32x9", "--bucket", "48x32x9", "--bucket", "32x48x5"]

    code = script.main([str(videos), "--output", str(output), *buckets, "--quiet"])

    assert code == 0
    out, _ = capsys.readouterr()
    manifest = load_manifest(output / "manifest.jsonl", check_media=True)
    expected_bucket = {  # by aspect ratio: 4:3 and wider -> 48x32, 3:4 -> 32x48, 1:1 -> 32x32
        (64, 48): (48, 32, 9),
        (48, 64): (32, 48, 5),
        (80, 48): (48, 32, 9),
        (64, 64): (32, 32, 9),
        (96, 48): (48, 32, 9),
        (32, 32): (32, 32, 9),
    }
    sizes = [(64, 48), (48, 64), (80, 48), (64, 64), (96, 48), (32, 32)]
    by_caption = {record.caption: record for record in manifest}
    assert len(by_caption) == len(AVAILABLE)
    for (_, codec, _), size in zip(AVAILABLE, sizes, strict=False):
        record = by_caption[f"a clip encoded with {codec}"]
        width, height, frames = expected_bucket[size]
        assert (record.width, record.height, record.frames, record.fps) == (
            width,
            height,
            frames,
            12.0,
        )
        pixels, fps, meta = read_video(manifest.media_path(record))
        assert pixels.shape == (frames, height, width, 3)
        assert fps == 12.0
        assert meta.codec == "h264"
        middle = pixels[:, height // 2, width // 2].astype(int)
        assert (middle[:, 1] > 150).all(), f"{codec}: the green middle column was cropped away"

    report = json.loads((output / "report.json").read_text(encoding="utf-8"))
    problems = {problem["media"]: problem for problem in report["problems"]}
    assert set(problems) == {"corrupt.mp4", "truncated.mp4"}
    assert problems["corrupt.mp4"]["kind"] == "unreadable"
    assert "not a readable video (Invalid data" in problems["corrupt.mp4"]["reason"]
    assert problems["truncated.mp4"]["kind"] == "unreadable"
    assert report["prepared"] == len(AVAILABLE)
    assert report["inputs"] == len(AVAILABLE) + 2
    assert out.splitlines()[0] == (
        f"prepared {len(AVAILABLE)} of {len(AVAILABLE) + 2} videos into {output / 'manifest.jsonl'}"
    )
    assert f"  corrupt.mp4: unreadable: {problems['corrupt.mp4']['reason']}" in out
    assert "  truncated.mp4: unreadable: " in out


def test_text_report_without_problems(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suffix, codec, pix_fmt = AVAILABLE[0]
    folder = tmp_path / "in"
    folder.mkdir()
    encode(folder / f"only.{suffix}", codec, pix_fmt, 9, 32, 32)
    (folder / "only.txt").write_text("the only clip", encoding="utf-8")
    output = tmp_path / "out"

    assert script.main([str(folder), "--output", str(output), "--bucket", "32x32x9"]) == 0

    assert capsys.readouterr().out.splitlines() == [
        f"prepared 1 of 1 video into {output / 'manifest.jsonl'}",
        "  32x32x9: 1",
    ]


def test_json_report_and_rerun_into_the_input_folder(
    script: ModuleType, videos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = videos / "prepared"
    args = [str(videos), "--output", str(output), "--bucket", "32x32x9", "--json", "--quiet"]
    assert script.main(args) == 0
    first = json.loads(capsys.readouterr().out)

    assert script.main(args) == 0  # the clips written into videos/prepared/clips are not inputs

    second = json.loads(capsys.readouterr().out)
    assert first == second
    assert second == json.loads((output / "report.json").read_text(encoding="utf-8"))
    assert second["buckets"] == {"32x32x9": len(AVAILABLE)}


def test_manifest_input_uses_its_captions_and_filters(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suffix, codec, pix_fmt = AVAILABLE[0]
    clips = tmp_path / "raw"
    clips.mkdir()
    long = encode(clips / f"long.{suffix}", codec, pix_fmt, 36, 64, 64)
    short = encode(clips / f"short.{suffix}", codec, pix_fmt, 6, 64, 64)
    small = encode(clips / f"small.{suffix}", codec, pix_fmt, 36, 16, 16)
    records = [
        ManifestRecord(media=f"raw/{path.name}", caption=f"the {path.stem} one", width=1,
                       height=1, frames=1, fps=1.0)
        for path in (long, short, small)
    ]  # fmt: skip
    manifest = write_manifest(records, tmp_path / "raw.jsonl")
    output = tmp_path / "out"

    code = script.main(
        [str(manifest), "--output", str(output), "--bucket", "32x32x17", "--min-duration", "1",
         "--max-duration", "5", "--min-size", "32", "--json", "--quiet"]
    )  # fmt: skip

    assert code == 0
    report = json.loads(capsys.readouterr().out)
    prepared = load_manifest(output / "manifest.jsonl")
    assert [(r.caption, r.width, r.height, r.frames) for r in prepared] == [
        ("the long one", 32, 32, 17)
    ]
    reasons = {problem["media"]: problem["reason"] for problem in report["problems"]}
    assert reasons == {
        f"raw/short.{suffix}": "too short: 0.50 s, expected at least 1 s",
        f"raw/small.{suffix}": "too small: 16x16, expected the shorter side to be at least 32 px",
    }


def test_nothing_prepared_exits_1_with_a_clear_message(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.webm").write_bytes(b"\x1aE\xdf\xa3 definitely not a video")
    suffix, codec, pix_fmt = AVAILABLE[0]
    encode(folder / f"uncaptioned.{suffix}", codec, pix_fmt, 10, 32, 32)

    code = script.main([str(folder), "--output", str(tmp_path / "out"), "--bucket", "32x32x9"])

    assert code == 1
    out, _ = capsys.readouterr()
    assert out.splitlines()[0] == "nothing prepared: 2 videos skipped"
    assert "  broken.webm: unreadable: " in out
    assert (
        f"  uncaptioned.{suffix}: no_caption: no caption: expected one in the input manifest or "
        f"in a sidecar file uncaptioned.txt"
    ) in out
    assert not (tmp_path / "out" / "manifest.jsonl").exists()

    assert script.main([str(folder), "--output", str(tmp_path / "out"), "--bucket", "32x32x9",
                        "--json", "--quiet"]) == 1  # fmt: skip
    out, err = capsys.readouterr()
    assert json.loads(out)["prepared"] == 0
    assert err.strip() == f"error: nothing prepared; see {tmp_path / 'out' / 'report.json'}"


@pytest.mark.parametrize(
    ("make_input", "extra", "message"),
    [
        (lambda root: root / "missing", [], "no such file or folder"),
        (lambda root: root, [], "no video files found; expected files ending in .mp4"),
        (lambda root: root / "bad.jsonl", [], "bad.jsonl:1: "),
        (lambda root: root / "empty.jsonl", [], "the manifest lists no clips"),
        (lambda root: root, ["--min-duration", "-1"], "min_duration: expected a number >= 0"),
    ],
)
def test_bad_input_exits_2_with_one_message(
    script: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_input: Callable[[Path], Path],
    extra: list[str],
    message: str,
) -> None:
    (tmp_path / "bad.jsonl").write_text("{oops\n", encoding="utf-8")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    source = make_input(tmp_path)

    code = script.main(
        [str(source), "--output", str(tmp_path / "out"), "--bucket", "32x32x9", *extra]
    )

    assert code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ")
    assert message in err


def test_odd_bucket_is_rejected(
    script: ModuleType, videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert script.main([str(videos), "--output", str(tmp_path / "o"), "--bucket", "33x32x9"]) == 2
    assert "bucket 33x32x9: expected an even width and height" in capsys.readouterr().err


def test_malformed_bucket_label_is_an_argument_error(
    script: ModuleType, videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        script.main([str(videos), "--output", str(tmp_path / "o"), "--bucket", "32by32"])
    assert info.value.code == 2
    assert "expected a label WIDTHxHEIGHTxFRAMES" in capsys.readouterr().err


def test_unwritable_output_exits_2(
    script: ModuleType, videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should go", encoding="utf-8")

    code = script.main([str(videos), "--output", str(blocker), "--bucket", "32x32x9", "--quiet"])

    assert code == 2
    assert capsys.readouterr().err.startswith("error: cannot write the prepared dataset: ")


def test_progress_bar_counts_the_videos(
    script: ModuleType, videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert script.main([str(videos), "--output", str(tmp_path / "o"), "--bucket", "32x32x9"]) == 0
    total = len(AVAILABLE) + 2
    assert f"{total}/{total}" in capsys.readouterr().err


# --- clips broken part way; reruns into the same output -----------------------------------


def noisy_x264(path: Path, count: int = 48) -> Path:
    """An H.264 MP4 of ``count`` noisy 64x48 frames (noise keeps every frame's packet large)."""
    rng = np.random.default_rng(1)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(12))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(count):
            pixels = rng.integers(60, 200, (48, 64, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 12)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def damage_the_middle(path: Path) -> Path:
    """Write 300 bytes of noise over the middle video packet of ``path``."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        starts = sorted(packet.pos for packet in container.demux(video) if packet.size)
    data = bytearray(path.read_bytes())
    middle = starts[len(starts) // 2]
    data[middle : middle + 300] = np.random.default_rng(3).bytes(300)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.fault("videos")
@pytest.mark.skipif(not has_encoder("libx264"), reason="needs the libx264 encoder")
def test_a_clip_broken_in_the_middle_is_reported_not_prepared(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    noisy_x264(folder / "good.mp4")
    damage_the_middle(noisy_x264(folder / "broken.mp4"))
    for name in ("good", "broken"):
        (folder / f"{name}.txt").write_text(f"the {name} clip", encoding="utf-8")
    output = tmp_path / "out"

    code = script.main([str(folder), "--output", str(output), "--bucket", "32x32x9", "--quiet"])

    assert code == 0
    out = capsys.readouterr().out
    assert [record.caption for record in load_manifest(output / "manifest.jsonl")] == [
        "the good clip"
    ]
    (problem,) = json.loads((output / "report.json").read_text(encoding="utf-8"))["problems"]
    assert problem["media"] == "broken.mp4"
    assert problem["kind"] == "unreadable"
    assert re.fullmatch(r"broken (after|at) frame \d+ of 48: .+", problem["reason"])
    assert f"  broken.mp4: unreadable: {problem['reason']}" in out.splitlines()
    assert sorted(p.name for p in (output / "clips").iterdir()) == ["00001_good.mp4"]


def captioned_clips(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix, codec, pix_fmt = AVAILABLE[0]
    for name in names:
        encode(folder / f"{name}.{suffix}", codec, pix_fmt, 9, 32, 32)
        (folder / f"{name}.txt").write_text(f"clip {name}", encoding="utf-8")
    return folder


@pytest.mark.fault("interrupted", guards_data=True)
def test_a_rerun_leaves_no_unlisted_clip_and_no_orphan_but_keeps_other_files(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = captioned_clips(tmp_path / "in", ["a", "b", "c"])
    output = tmp_path / "out"
    args = [str(source), "--output", str(output), "--bucket", "32x32x9", "--quiet"]
    assert script.main(args) == 0
    clips = output / "clips"
    assert sorted(p.name for p in clips.iterdir()) == ["00000_a.mp4", "00001_b.mp4", "00002_c.mp4"]
    # what a run killed while writing leaves, and files that are not the script's
    orphans = {
        temporary_sibling(clips / "00001_c.mp4"): 500,
        temporary_sibling(output / "manifest.jsonl"): 40,
        temporary_sibling(output / "report.json"): 30,
    }
    for path, size in orphans.items():
        path.write_bytes(b"o" * size)
    others = {
        clips / "notes.txt": b"the user's notes",
        clips / "holiday.mp4": b"not a prepared clip's name",
        temporary_sibling(clips / "holiday.mp4"): b"not a prepared clip's temporary file",
        output / "00009_x.mp4": b"a clip name outside clips/",
        temporary_sibling(output / "notes.txt"): b"another program's temporary file",
    }
    for path, data in others.items():
        path.write_bytes(data)
    (source / "b.mp4").unlink()
    capsys.readouterr()
    stale = {name: (clips / name).stat().st_size for name in ("00001_b.mp4", "00002_c.mp4")}

    assert script.main([*args[:-1], "--json"]) == 0

    report = json.loads(capsys.readouterr().out)
    manifest = load_manifest(output / "manifest.jsonl", check_media=True)
    listed = {record.media.removeprefix("clips/") for record in manifest}
    assert listed == {"00000_a.mp4", "00001_c.mp4"}
    left = {p.name for p in clips.iterdir()}
    assert left == listed | {p.name for p in others if p.parent == clips}
    assert sorted(p.name for p in output.iterdir()) == sorted(
        ["clips", "manifest.jsonl", "report.json", *(p.name for p in others if p.parent == output)]
    )
    for path, data in others.items():
        assert path.read_bytes() == data
    expected = [
        {"path": path.relative_to(output).as_posix(), "bytes": size,
         "reason": "left by an interrupted write"}
        for path, size in sorted(orphans.items(), key=lambda item: item[0].parent != output)
    ] + [
        {"path": f"clips/{name}", "bytes": size, "reason": "not in the new manifest"}
        for name, size in stale.items()
    ]  # fmt: skip
    assert report["removed"] == expected
    assert json.loads((output / "report.json").read_text(encoding="utf-8")) == report

    assert script.main(args) == 0  # a third run finds nothing left to remove
    assert "removed" not in capsys.readouterr().out


@pytest.mark.fault("interrupted", guards_data=True)
def test_a_rerun_prints_each_removal_once_with_the_bytes_freed(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = captioned_clips(tmp_path / "in", ["a", "b"])
    output = tmp_path / "out"
    args = [str(source), "--output", str(output), "--bucket", "32x32x9", "--quiet"]
    assert script.main(args) == 0
    orphan = temporary_sibling(output / "clips" / "00002_c.mp4")
    orphan.write_bytes(b"o" * 1500)
    (source / "a.mp4").unlink()  # b becomes source 0: both old clips are stale
    stale = [(output / "clips" / name).stat().st_size for name in ("00000_a.mp4", "00001_b.mp4")]
    capsys.readouterr()

    assert script.main(args) == 0

    lines = capsys.readouterr().out.splitlines()
    freed = 1500 + sum(stale)
    assert lines[-4:] == [
        f"removed 3 leftover files of earlier runs ({freed:,} bytes freed):",
        f"  clips/{orphan.name}: left by an interrupted write (1,500 bytes)",
        f"  clips/00000_a.mp4: not in the new manifest ({stale[0]:,} bytes)",
        f"  clips/00001_b.mp4: not in the new manifest ({stale[1]:,} bytes)",
    ]
    assert sorted(p.name for p in (output / "clips").iterdir()) == ["00000_b.mp4"]


@pytest.mark.fault("interrupted", guards_data=True)
def test_clips_given_as_input_are_never_removed(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Preparing a prepared dataset again into its own folder keeps the clips it reads."""
    output = tmp_path / "out"
    source = captioned_clips(tmp_path / "in", ["a"])
    assert script.main([str(source), "--output", str(output), "--bucket", "32x32x9"]) == 0
    first = (output / "clips" / "00000_a.mp4").read_bytes()
    again = write_manifest(load_manifest(output / "manifest.jsonl"), tmp_path / "again.jsonl")
    (tmp_path / "clips").symlink_to(output / "clips", target_is_directory=True)

    assert script.main([str(again), "--output", str(output), "--bucket", "32x32x9"]) == 0

    assert (output / "clips" / "00000_a.mp4").read_bytes() == first
    assert [r.media for r in load_manifest(output / "manifest.jsonl", check_media=True)] == [
        "clips/00000_00000_a.mp4"
    ]
    assert "removed" not in capsys.readouterr().out
