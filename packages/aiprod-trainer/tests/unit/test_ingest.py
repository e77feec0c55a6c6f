"""Ingesting real videos: probing, decoding, fitting to buckets, filtering and preparation.

Videos are written here with PyAV in every container/codec pair this FFmpeg build can
encode (at least three), so the same code paths as for users' files are exercised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import av.error
import numpy as np
import pytest

from aiprod_pipelines.video_io import read_video
from aiprod_trainer import Bucket, ManifestRecord, load_manifest, write_manifest
from aiprod_trainer.data.ingest import (
    ClipFilter,
    IngestError,
    VideoProbe,
    _probe,
    _reason,
    choose_bucket,
    decode_frames,
    find_videos,
    fit_frames,
    probe_video,
)
from aiprod_trainer.data.preparation import (
    Source,
    check_buckets,
    prepare_dataset,
    sidecar_caption,
    sources_from_folder,
    sources_from_manifest,
)

#: (container suffix, encoder, pixel format, name the decoder reports)
CANDIDATES = [
    ("mp4", "libx264", "yuv420p", "h264"),
    ("mp4", "mpeg4", "yuv420p", "mpeg4"),
    ("webm", "libvpx", "yuv420p", "vp8"),
    ("avi", "mjpeg", "yuvj420p", "mjpeg"),
    ("mkv", "ffv1", "yuv420p", "ffv1"),
    ("mov", "prores_ks", "yuv422p10le", "prores"),
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
PAIR_IDS = [f"{suffix}-{codec}" for suffix, codec, _, _ in AVAILABLE]


def stripes(count: int, width: int = 40, height: int = 24) -> np.ndarray:
    """Red, green and blue vertical stripes whose brightness changes frame by frame."""
    frames = np.zeros((count, height, width, 3), dtype=np.uint8)
    third = width // 3
    for index in range(count):
        level = 120 + (10 * index) % 130
        frames[index, :, :third, 0] = level
        frames[index, :, third : 2 * third, 1] = level
        frames[index, :, 2 * third :, 2] = level
    return frames


def encode(path: Path, codec: str, pix_fmt: str, frames: np.ndarray, fps: int = 12) -> Path:
    """Write ``frames`` with PyAV's ``codec`` into the container ``path``'s suffix names."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width = frames.shape[2]
        stream.height = frames.shape[1]
        stream.pix_fmt = pix_fmt
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_clip(folder: Path, name: str, count: int = 11, **kwargs: int) -> Path:
    suffix, codec, pix_fmt, _ = AVAILABLE[0]
    return encode(folder / f"{name}.{suffix}", codec, pix_fmt, stripes(count, **kwargs))


def cut_in_half(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def test_at_least_three_container_codec_pairs_can_be_written() -> None:
    assert len(AVAILABLE) >= 3, f"only {PAIR_IDS} can be encoded"


# --- probing and decoding ---------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "codec", "pix_fmt", "decoder"), AVAILABLE, ids=PAIR_IDS)
def test_probe_reads_size_frames_rate_and_codec(
    tmp_path: Path, suffix: str, codec: str, pix_fmt: str, decoder: str
) -> None:
    path = encode(tmp_path / f"clip.{suffix}", codec, pix_fmt, stripes(11), fps=12)

    probe = probe_video(path)

    assert (probe.width, probe.height, probe.frames) == (40, 24, 11)
    assert probe.fps == 12
    assert probe.codec == decoder
    assert probe.duration_s == pytest.approx(11 / 12)


@pytest.mark.parametrize(("suffix", "codec", "pix_fmt", "decoder"), AVAILABLE, ids=PAIR_IDS)
def test_decode_returns_the_first_frames_in_order(
    tmp_path: Path, suffix: str, codec: str, pix_fmt: str, decoder: str
) -> None:
    original = stripes(11)
    path = encode(tmp_path / f"clip.{suffix}", codec, pix_fmt, original)

    frames = decode_frames(path, 5)

    assert frames.shape == (5, 24, 40, 3)
    assert frames.dtype == np.uint8
    # compare the stripes' centres (edges blur in lossy codecs)
    centres = frames[:, :, [6, 20, 33]].astype(int).mean(axis=1)
    expected = original[:5, :, [6, 20, 33]].astype(int).mean(axis=1)
    assert np.abs(centres - expected).max() < 12


def test_corrupt_file_is_not_a_readable_video(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(IngestError, match="not a readable video") as info:
        probe_video(junk)
    assert info.value.path == junk
    assert str(info.value).startswith(f"{junk}: ")
    with pytest.raises(IngestError, match="not a readable video"):
        decode_frames(junk, 1)


def test_mp4_cut_in_half_is_not_readable(tmp_path: Path) -> None:
    whole = write_clip(tmp_path, "whole")
    with pytest.raises(IngestError, match="not a readable video"):
        probe_video(cut_in_half(whole, tmp_path / "half.mp4"))


@pytest.mark.skipif(not has_encoder("libx264"), reason="needs the libx264 encoder")
def test_matroska_cut_in_half_is_reported_as_truncated(tmp_path: Path) -> None:
    whole = encode(tmp_path / "whole.mkv", "libx264", "yuv420p", stripes(24))
    half = cut_in_half(whole, tmp_path / "half.mkv")
    with pytest.raises(IngestError, match=r"truncated; the header declares 24 frames but the"):
        probe_video(half)


@pytest.mark.skipif(not has_encoder("mjpeg"), reason="needs the mjpeg encoder")
def test_avi_cut_in_half_fails_while_decoding(tmp_path: Path) -> None:
    whole = encode(tmp_path / "whole.avi", "mjpeg", "yuvj420p", stripes(12))
    half = cut_in_half(whole, tmp_path / "half.avi")
    assert probe_video(half).frames == 12  # the AVI header still claims every frame
    with pytest.raises(
        IngestError,
        match=r"broken after frame \d+ of 12: |shorter than its container says: \d+ of 12 frames",
    ):
        decode_frames(half, 12)


def test_decoding_more_frames_than_the_file_holds_fails(tmp_path: Path) -> None:
    path = write_clip(tmp_path, "clip", count=6)
    with pytest.raises(IngestError, match="too few frames: decoded 6, expected at least 7"):
        decode_frames(path, 7)


def test_decode_rejects_a_non_positive_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="count: expected an integer > 0"):
        decode_frames(tmp_path / "any.mp4", 0)


def x264_clip(path: Path, count: int = 48, *, faststart: bool = False) -> Path:
    """An H.264 MP4 of ``count`` frames of noisy stripes (noise makes every frame's packet
    large, so damage lands in the middle of the stream)."""
    frames = stripes(count, width=64, height=48)
    frames += np.random.default_rng(1).integers(0, 24, frames.shape, dtype=np.uint8)
    with av.open(
        str(path), mode="w", options={"movflags": "faststart"} if faststart else {}
    ) as out:
        stream = out.add_stream("libx264", rate=Fraction(12))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 12)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def packet_ends(path: Path) -> list[int]:
    """The file offsets where the video packets end, in file order."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        return sorted(packet.pos + packet.size for packet in container.demux(video) if packet.size)


def damage_the_middle(source: Path, target: Path) -> Path:
    """``source`` with 300 bytes of noise written over the middle of its media data."""
    data = bytearray(source.read_bytes())
    ends = packet_ends(source)
    middle = ends[len(ends) // 2]
    data[middle : middle + 300] = np.random.default_rng(3).bytes(300)
    target.write_bytes(bytes(data))
    return target


def cut_after_packet(source: Path, target: Path, packets: int) -> Path:
    """``source`` cut cleanly after its first ``packets`` video packets (moov at the front)."""
    target.write_bytes(source.read_bytes()[: packet_ends(source)[packets - 1]])
    return target


@pytest.mark.fault("videos")
@pytest.mark.skipif(not has_encoder("libx264"), reason="needs the libx264 encoder")
def test_a_clip_broken_after_the_frames_it_keeps_is_reported(tmp_path: Path) -> None:
    broken = damage_the_middle(x264_clip(tmp_path / "whole.mp4"), tmp_path / "broken.mp4")
    assert probe_video(broken).frames == 48  # the header still looks whole

    with pytest.raises(IngestError) as info:
        decode_frames(broken, 9)  # the first 9 frames decode fine

    assert info.value.path == broken
    match = re.fullmatch(r"broken (?:after|at) frame (\d+) of 48: .+", info.value.reason)
    assert match is not None, info.value.reason
    assert 9 < int(match.group(1)) < 48
    assert decode_frames(tmp_path / "whole.mp4", 9).shape == (9, 48, 64, 3)


@pytest.mark.fault("videos")
@pytest.mark.skipif(not has_encoder("libx264"), reason="needs the libx264 encoder")
def test_a_clip_shorter_than_its_container_says_is_reported(tmp_path: Path) -> None:
    whole = x264_clip(tmp_path / "whole.mp4", faststart=True)
    short = cut_after_packet(whole, tmp_path / "short.mp4", 30)
    assert probe_video(short).frames == 48

    with pytest.raises(IngestError) as info:
        decode_frames(short, 9)

    assert info.value.reason == "shorter than its container says: 30 of 48 frames"


@pytest.mark.skipif(not has_encoder("aac"), reason="needs the aac encoder")
def test_file_without_video_stream_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "sound.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 8000
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(IngestError, match="holds no video stream"):
        probe_video(path)
    with pytest.raises(IngestError, match="holds no video stream"):
        decode_frames(path, 1)


def test_missing_file_and_folder_are_named(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"missing\.mp4: no such file; expected a video file"):
        probe_video(tmp_path / "missing.mp4")
    with pytest.raises(IngestError, match="not a file; expected a video file"):
        decode_frames(tmp_path, 1)


def fake_container(rate: object, frames: int, packets: int, duration: int | None) -> object:
    stream = SimpleNamespace(
        average_rate=rate,
        guessed_rate=None,
        frames=frames,
        duration=None,
        time_base=None,
        codec_context=SimpleNamespace(width=8, height=8, name="fake"),
    )
    return SimpleNamespace(
        streams=SimpleNamespace(video=[stream]),
        duration=duration,
        demux=lambda _stream: [SimpleNamespace(size=1)] * packets + [SimpleNamespace(size=0)],
    )


def test_probe_needs_a_frame_rate(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="stores no frame rate"):
        _probe(fake_container(None, 5, 5, None), tmp_path / "x.mkv")  # type: ignore[arg-type]


def test_probe_counts_packets_when_no_count_or_duration_is_stored(tmp_path: Path) -> None:
    probe = _probe(fake_container(Fraction(10), 0, 7, None), tmp_path / "x.mkv")  # type: ignore[arg-type]
    assert probe.frames == 7
    with pytest.raises(IngestError, match=r"the video stream is empty \(8x8, 0 frames\)"):
        _probe(fake_container(Fraction(10), 0, 0, None), tmp_path / "x.mkv")  # type: ignore[arg-type]


def test_decode_rejects_a_frame_size_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streams that change size mid-way (PyAV's encoder cannot write one) are refused."""
    path = tmp_path / "changing.mkv"
    path.write_bytes(b"")
    shapes = [(24, 32, 3), (24, 32, 3), (48, 64, 3)]
    frames = [SimpleNamespace(to_ndarray=lambda format, shape=shape: np.zeros(shape, np.uint8),
                              is_corrupt=False)
              for shape in shapes]  # fmt: skip
    container = SimpleNamespace(
        streams=SimpleNamespace(video=[SimpleNamespace(frames=3)]),
        decode=lambda _stream: iter(frames),
    )

    class Opened:
        def __enter__(self) -> object:
            return container

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(av, "open", lambda *args, **kwargs: Opened())
    with pytest.raises(IngestError, match="frame 2 is 64x48 but the first is 32x24"):
        decode_frames(path, 3)


def test_read_error_reasons_are_short() -> None:
    assert _reason(PermissionError(13, "Permission denied")) == "Permission denied"
    assert _reason(ValueError("bad value")) == "bad value"
    assert _reason(ValueError()) == "ValueError"


# --- fitting, buckets, filters, finding -------------------------------------------------


def test_fit_keeps_frames_of_the_target_size() -> None:
    frames = stripes(2, width=32, height=16)
    assert fit_frames(frames, 32, 16) is frames


def test_fit_scales_to_cover_and_crops_the_centre() -> None:
    # 96x32 of red | green | blue thirds into 32x32: the centre third (green) survives
    fitted = fit_frames(stripes(2, width=96, height=32), 32, 32)
    assert fitted.shape == (2, 32, 32, 3)
    assert fitted.dtype == np.uint8
    inner = fitted[:, :, 2:-2].astype(int)
    assert inner[..., 1].min() > 100
    assert inner[..., 0].max() < 20
    assert inner[..., 2].max() < 20


def test_fit_enlarges_small_frames_and_crops_tall_ones() -> None:
    frame = np.zeros((1, 40, 10, 3), dtype=np.uint8)
    frame[:, :10] = 255  # top quarter white, cropped away when 10x40 -> 20x20 (scaled 20x80)
    fitted = fit_frames(frame, 20, 20)
    assert fitted.shape == (1, 20, 20, 3)
    assert fitted.max() < 10


def test_choose_bucket_only_considers_buckets_the_clip_can_fill() -> None:
    allowed = [Bucket(32, 32, 9), Bucket(32, 32, 17), Bucket(64, 32, 9)]
    probe = VideoProbe(Path("x.mp4"), 32, 32, 12, Fraction(8), "h264")
    assert choose_bucket(probe, allowed) == Bucket(32, 32, 9)
    longer = VideoProbe(Path("x.mp4"), 32, 32, 40, Fraction(8), "h264")
    assert choose_bucket(longer, allowed) == Bucket(32, 32, 17)
    wide = VideoProbe(Path("x.mp4"), 128, 64, 40, Fraction(8), "h264")
    assert choose_bucket(wide, allowed) == Bucket(64, 32, 9)
    short = VideoProbe(Path("x.mp4"), 32, 32, 8, Fraction(8), "h264")
    assert choose_bucket(short, allowed) is None


def test_find_videos_recurses_sorted_and_skips_hidden_and_excluded(tmp_path: Path) -> None:
    for name in ["b.MP4", "a.webm", "sub/c.mov", "sub/deep/d.avi", "e.mkv", "notes.txt",
                 ".hidden.mp4", ".cache/f.mp4", "out/clips/old.mp4"]:  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = find_videos(tmp_path, exclude=tmp_path / "out" / "clips")
    assert [path.relative_to(tmp_path).as_posix() for path in found] == [
        "a.webm",
        "b.MP4",
        "e.mkv",
        "sub/c.mov",
        "sub/deep/d.avi",
    ]
    assert len(find_videos(tmp_path)) == 6


def probe_of(width: int = 64, height: int = 48, frames: int = 24, fps: int = 12) -> VideoProbe:
    return VideoProbe(Path("x.mp4"), width, height, frames, Fraction(fps), "h264")


def test_clip_filter_reasons() -> None:
    keep_all = ClipFilter()
    assert keep_all.rejection(probe_of()) is None
    strict = ClipFilter(min_duration=1.0, max_duration=3.0, min_size=48)
    assert strict.rejection(probe_of(frames=24)) is None
    assert strict.rejection(probe_of(frames=6)) == "too short: 0.50 s, expected at least 1 s"
    assert strict.rejection(probe_of(frames=48)) == "too long: 4.00 s, expected at most 3 s"
    assert strict.rejection(probe_of(width=40)) == (
        "too small: 40x48, expected the shorter side to be at least 48 px"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_duration": -1.0}, "min_duration: expected a number >= 0"),
        ({"min_duration": 2.0, "max_duration": 1.0}, "max_duration: expected a number >= min"),
        ({"min_size": 0}, "min_size: expected an integer >= 1"),
    ],
)
def test_clip_filter_rejects_bad_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClipFilter(**kwargs)  # type: ignore[arg-type]


# --- preparation ------------------------------------------------------------------------


def test_sidecar_caption_is_read_and_stripped(tmp_path: Path) -> None:
    (tmp_path / "clip.txt").write_text("  a red fox\n", encoding="utf-8")
    assert sidecar_caption(tmp_path / "clip.mp4") == "a red fox"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no caption: expected one in the input manifest or in a sidecar file clip.txt"),
        (b" \n", "no caption: clip.txt is empty"),
        (b"\xff\xfe\xfa", "no caption: clip.txt is not UTF-8 text"),
        ("folder", "no caption: clip.txt cannot be read"),
    ],
)
def test_sidecar_caption_problems(
    tmp_path: Path, content: bytes | str | None, message: str
) -> None:
    sidecar = tmp_path / "clip.txt"
    if content == "folder":
        sidecar.mkdir()
    elif isinstance(content, bytes):
        sidecar.write_bytes(content)
    with pytest.raises(IngestError) as info:
        sidecar_caption(tmp_path / "clip.mp4")
    assert info.value.reason.startswith(message)


def test_check_buckets() -> None:
    assert check_buckets([Bucket(64, 32, 9), Bucket(32, 32, 9), Bucket(32, 32, 9)]) == (
        Bucket(32, 32, 9),
        Bucket(64, 32, 9),
    )
    with pytest.raises(ValueError, match="expected at least one bucket"):
        check_buckets([])
    with pytest.raises(ValueError, match="bucket 33x32x9: expected an even width and height"):
        check_buckets([Bucket(33, 32, 9)])


def make_input_folder(root: Path) -> Path:
    """Every encodable pair, plus a corrupt, a truncated, a short and an uncaptioned file."""
    source = root / "input"
    (source / "nested").mkdir(parents=True)
    for index, (suffix, codec, pix_fmt, _) in enumerate(AVAILABLE):
        folder = source / "nested" if index % 2 else source
        encode(folder / f"{codec}.{suffix}", codec, pix_fmt, stripes(11))
        (folder / f"{codec}.txt").write_text(f"stripes in {codec}\n", encoding="utf-8")
    (source / "corrupt.mp4").write_bytes(np.random.default_rng(1).bytes(2048))
    (source / "corrupt.txt").write_text("never used", encoding="utf-8")
    cut_in_half(write_clip(root, "whole"), source / "truncated.mp4")
    (source / "truncated.txt").write_text("never used", encoding="utf-8")
    write_clip(source, "short", count=4)
    (source / "short.txt").write_text("too short", encoding="utf-8")
    write_clip(source, "uncaptioned")
    return source


def test_prepare_folder_writes_bucketed_clips_manifest_and_report(tmp_path: Path) -> None:
    source = make_input_folder(tmp_path)
    output = tmp_path / "prepared"
    buckets = [Bucket(32, 32, 9), Bucket(48, 32, 5)]

    report = prepare_dataset(sources_from_folder(source), output, buckets, source_name=str(source))

    manifest = load_manifest(output / "manifest.jsonl", check_media=True)
    assert len(manifest) == len(AVAILABLE)
    assert {record.caption for record in manifest} == {
        f"stripes in {codec}" for _, codec, _, _ in AVAILABLE
    }
    for record in manifest:
        # 40x24 (5:3) is nearer 48x32 (3:2) than 32x32 (1:1)
        assert (record.width, record.height, record.frames, record.fps) == (48, 32, 5, 12.0)
        frames, fps, meta = read_video(manifest.media_path(record))
        assert frames.shape == (5, 32, 48, 3)
        assert fps == 12.0
        assert meta.codec == "h264"
        # the green middle stripe sits in the middle after scaling to cover and cropping
        assert frames[0, 16, 24, 1] > 100
    problems = {skipped.media: (skipped.kind, skipped.reason) for skipped in report.skipped}
    assert set(problems) == {"corrupt.mp4", "truncated.mp4", "short.mp4", "uncaptioned.mp4"}
    assert problems["corrupt.mp4"][0] == "unreadable"
    assert "not a readable video" in problems["corrupt.mp4"][1]
    assert problems["truncated.mp4"][0] == "unreadable"
    assert problems["short.mp4"] == ("filtered", "too few frames: 4, the smallest bucket needs 5")
    assert problems["uncaptioned.mp4"][0] == "no_caption"
    saved = json.loads((output / "report.json").read_text(encoding="utf-8"))
    assert saved == report.to_dict()
    assert saved["prepared"] == len(AVAILABLE)
    assert saved["inputs"] == len(AVAILABLE) + 4
    assert saved["buckets"] == {"48x32x5": len(AVAILABLE)}
    assert saved["manifest"] == str(output / "manifest.jsonl")


def test_prepare_takes_captions_from_a_manifest_and_applies_filters(tmp_path: Path) -> None:
    short = write_clip(tmp_path, "short", count=12, width=32, height=32)
    long = write_clip(tmp_path, "long", count=36, width=64, height=64)
    small = write_clip(tmp_path, "small", count=24, width=16, height=16)
    records = [
        ManifestRecord(media=path.name, caption=f"clip {path.stem}", width=1, height=1,
                       frames=1, fps=1.0)
        for path in (short, long, small)
    ]  # fmt: skip
    manifest = load_manifest(write_manifest(records, tmp_path / "raw.jsonl"))
    sources = sources_from_manifest(manifest)
    assert [source.caption for source in sources] == ["clip short", "clip long", "clip small"]
    clip_filter = ClipFilter(min_duration=1.5, max_duration=10, min_size=20)

    report = prepare_dataset(sources, tmp_path / "out", [Bucket(32, 32, 17)], clip_filter)

    assert [(r.media, r.caption, r.frames) for r in report.prepared] == [
        ("clips/00001_long.mp4", "clip long", 17)
    ]
    assert [(s.media, s.kind) for s in report.skipped] == [
        ("short.mp4", "filtered"),
        ("small.mp4", "filtered"),
    ]
    assert report.skipped[0].reason.startswith("too short: 1.00 s")
    assert report.skipped[1].reason.startswith("too small: 16x16")


def test_prepare_with_nothing_usable_writes_only_the_report(tmp_path: Path) -> None:
    (tmp_path / "bad.mkv").write_bytes(b"not a video")
    seen: list[Source] = []

    def progress(items: Sequence[Source]) -> list[Source]:
        seen.extend(items)
        return list(items)

    report = prepare_dataset(
        sources_from_folder(tmp_path), tmp_path / "out", [Bucket(8, 8, 1)], progress=progress
    )

    assert [source.shown for source in seen] == ["bad.mkv"]
    assert report.prepared == []
    assert report.manifest_path is None
    assert not (tmp_path / "out" / "manifest.jsonl").exists()
    saved = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert saved["manifest"] is None
    assert saved["problems"][0]["kind"] == "unreadable"


@pytest.mark.skipif(not has_encoder("mjpeg"), reason="needs the mjpeg encoder")
def test_prepare_reports_a_file_that_fails_while_decoding(tmp_path: Path) -> None:
    whole = encode(tmp_path / "whole.avi", "mjpeg", "yuvj420p", stripes(12))
    source = Source(cut_in_half(whole, tmp_path / "half.avi"), "a caption", "half.avi")

    report = prepare_dataset([source], tmp_path / "out", [Bucket(32, 32, 12)])

    assert report.prepared == []
    assert [(s.media, s.kind) for s in report.skipped] == [("half.avi", "unreadable")]
    assert report.skipped[0].reason.startswith(("broken after frame", "shorter than its"))


@pytest.mark.fault("videos")
@pytest.mark.skipif(not has_encoder("libx264"), reason="needs the libx264 encoder")
def test_prepare_skips_clips_broken_or_cut_after_the_frames_a_bucket_needs(
    tmp_path: Path,
) -> None:
    whole = x264_clip(tmp_path / "whole.mp4", faststart=True)
    broken = damage_the_middle(whole, tmp_path / "broken.mp4")
    short = cut_after_packet(whole, tmp_path / "short.mp4", 30)
    sources = [Source(path, f"clip {path.stem}", path.name) for path in (whole, broken, short)]

    report = prepare_dataset(sources, tmp_path / "out", [Bucket(64, 48, 9)])

    assert [record.caption for record in report.prepared] == ["clip whole"]
    problems = {skipped.media: skipped for skipped in report.skipped}
    assert set(problems) == {"broken.mp4", "short.mp4"}
    assert {skipped.kind for skipped in report.skipped} == {"unreadable"}
    assert re.fullmatch(r"broken (after|at) frame \d+ of 48: .+", problems["broken.mp4"].reason)
    assert re.fullmatch(
        r"shorter than its container says: \d+ of 48 frames", problems["short.mp4"].reason
    )
    assert [p.name for p in (tmp_path / "out" / "clips").iterdir()] == ["00000_whole.mp4"]


def test_prepare_rejects_odd_buckets_before_reading(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even width and height"):
        prepare_dataset([], tmp_path, [Bucket(31, 32, 9)])
