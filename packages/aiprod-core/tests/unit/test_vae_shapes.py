"""Shape rules of the causal VAE: which videos fit, what their latents are, the messages."""

from __future__ import annotations

import pytest
import torch

from aiprod_core.errors import AiprodError
from aiprod_core.models.presets import SMALL, TINY
from aiprod_core.vae import CausalVideoVAE, VideoGeometry, VideoShapeError

TINY_GEOMETRY = VideoGeometry(spatial_compression=4, temporal_compression=2)


@pytest.mark.parametrize(
    ("video", "latent"),
    [
        ((1, 8, 8), (1, 2, 2)),
        ((3, 8, 8), (2, 2, 2)),
        ((5, 12, 20), (3, 3, 5)),
        ((9, 12, 20), (5, 3, 5)),
        ((17, 4, 4), (9, 1, 1)),
    ],
)
def test_latent_and_video_shapes_are_inverse(
    video: tuple[int, int, int], latent: tuple[int, int, int]
) -> None:
    assert TINY_GEOMETRY.latent_shape(*video) == latent
    assert TINY_GEOMETRY.video_shape(*latent) == video


def test_small_preset_compresses_time_by_four_and_space_by_eight() -> None:
    vae_geometry = VideoGeometry(SMALL.vae.spatial_compression, SMALL.vae.temporal_compression)
    assert vae_geometry.latent_shape(1, 64, 128) == (1, 8, 16)
    assert vae_geometry.latent_shape(25, 64, 64) == (7, 8, 8)


def test_error_is_a_value_error_and_a_project_error() -> None:
    assert issubclass(VideoShapeError, ValueError)
    assert issubclass(VideoShapeError, AiprodError)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (
            (10, 8, 8),
            "frames=10 does not fit temporal_compression=2: use 1 + 2k frames, e.g. 9 or 11",
        ),
        ((0, 8, 8), "frames=0 does not fit temporal_compression=2: use 1 + 2k frames, e.g. 1"),
        (
            (9, 13, 8),
            "height=13 is not a positive multiple of spatial_compression=4: use e.g. 12 or 16",
        ),
        (
            (9, 8, 2),
            "width=2 is not a positive multiple of spatial_compression=4: use e.g. 4",
        ),
        (
            (9, 8, -5),
            "width=-5 is not a positive multiple of spatial_compression=4: use e.g. 4",
        ),
    ],
)
def test_rejected_shapes_name_the_nearest_valid_values(
    shape: tuple[int, int, int], message: str
) -> None:
    with pytest.raises(VideoShapeError) as caught:
        TINY_GEOMETRY.validate_video_shape(*shape)
    assert str(caught.value) == f"video shape {shape[0]}x{shape[1]}x{shape[2]}: {message}"


def test_every_problem_is_reported_in_one_message() -> None:
    with pytest.raises(VideoShapeError) as caught:
        TINY_GEOMETRY.latent_shape(4, 10, 21)
    message = str(caught.value)
    assert "\n" not in message
    for expected in ("frames=4", "e.g. 3 or 5", "height=10", "e.g. 8 or 12", "width=21"):
        assert expected in message
    assert message.endswith("use e.g. 20 or 24")


def test_temporal_compression_four_suggests_neighbours_four_apart() -> None:
    geometry = VideoGeometry(spatial_compression=8, temporal_compression=4)
    assert geometry.problems(7, 16, 16) == [
        "frames=7 does not fit temporal_compression=4: use 1 + 4k frames, e.g. 5 or 9"
    ]
    assert geometry.problems(9, 16, 16) == []


def test_empty_latents_are_rejected() -> None:
    with pytest.raises(VideoShapeError, match=r"latent shape 0x2x2: every size must be at least 1"):
        TINY_GEOMETRY.video_shape(0, 2, 2)


@pytest.fixture(scope="module")
def vae() -> CausalVideoVAE:
    torch.manual_seed(0)
    return CausalVideoVAE(TINY.vae).eval()


def test_model_methods_follow_the_geometry(vae: CausalVideoVAE) -> None:
    assert vae.latent_shape(9, 12, 20) == (5, 3, 5)
    assert vae.video_shape(5, 3, 5) == (9, 12, 20)
    with pytest.raises(VideoShapeError, match=r"frames=2 .* e\.g\. 1 or 3"):
        vae.validate_video_shape(2, 8, 8)


def test_encode_rejects_frames_that_do_not_fit(vae: CausalVideoVAE) -> None:
    with pytest.raises(VideoShapeError, match=r"frames=4 .*e\.g\. 3 or 5"):
        vae.encode(torch.zeros(1, 3, 4, 8, 8))


def test_encode_rejects_sizes_that_do_not_fit(vae: CausalVideoVAE) -> None:
    with pytest.raises(VideoShapeError, match=r"height=10 .*e\.g\. 8 or 12"):
        vae.encode(torch.zeros(1, 3, 1, 10, 8))


@pytest.mark.parametrize("shape", [(3, 1, 8, 8), (1, 4, 1, 8, 8), (1, 1, 3, 1, 8, 8)])
def test_encode_rejects_wrong_layouts(vae: CausalVideoVAE, shape: tuple[int, ...]) -> None:
    with pytest.raises(VideoShapeError) as caught:
        vae.encode(torch.zeros(*shape))
    assert str(caught.value) == (
        f"video must be [batch, 3, frames, height, width], got shape {shape}"
    )


def test_decode_rejects_wrong_channels_and_empty_latents(vae: CausalVideoVAE) -> None:
    with pytest.raises(VideoShapeError, match=r"latents must be \[batch, 8, frames"):
        vae.decode(torch.zeros(1, 4, 1, 2, 2))
    with pytest.raises(VideoShapeError, match="every size must be at least 1"):
        vae.decode(torch.zeros(1, 8, 1, 0, 2))
    with pytest.raises(VideoShapeError, match=r"latents must be \[batch, 8, frames"):
        vae.decode_tiled(torch.zeros(8, 1, 2, 2))
