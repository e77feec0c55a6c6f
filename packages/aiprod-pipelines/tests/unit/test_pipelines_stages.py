"""The shared stages: sampler choice, prompt encoding, noise, the denoising stage, decoding,
the two-stage tail schedule and progress reporting."""

from __future__ import annotations

import pytest
import torch

from aiprod_core.diffusion import (
    ClassifierFreeGuidance,
    Conditioning,
    EulerSampler,
    FlowMatchSchedule,
    FrameCondition,
    HeunSampler,
)
from aiprod_core.models.presets import TINY
from aiprod_core.text import BuiltinTextEncoder, TextEmbedding
from aiprod_core.transformer import VideoTransformer
from aiprod_core.vae import CausalVideoVAE
from aiprod_pipelines.pipelines import InvalidRequestError
from aiprod_pipelines.pipelines.progress import StepProgress
from aiprod_pipelines.pipelines.stages import (
    PromptEmbeddings,
    decode_latents,
    denoise,
    draw_noise,
    encode_prompts,
    num_tokens,
    resolve_sampler,
    seeded_generator,
    video_to_uint8,
)
from aiprod_pipelines.pipelines.two_stage import tail_sigmas


def constant_prompts(positive: float, negative: float) -> PromptEmbeddings:
    def embedding(value: float) -> TextEmbedding:
        return TextEmbedding(torch.full((1, 3, 4), value), torch.ones(1, 3, dtype=torch.bool))

    return PromptEmbeddings(positive=embedding(positive), negative=embedding(negative))


def text_valued_denoiser(
    x: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """A velocity equal to the text's value, per sample: it shows which text each pass saw."""
    return text[:, 0, 0].view(-1, 1, 1, 1, 1).expand_as(x).clone()


def test_resolve_sampler() -> None:
    assert isinstance(resolve_sampler(None), EulerSampler)
    assert isinstance(resolve_sampler("heun"), HeunSampler)
    assert isinstance(resolve_sampler("Euler"), EulerSampler)
    given = HeunSampler()
    assert resolve_sampler(given) is given
    with pytest.raises(
        InvalidRequestError, match="sampler='ddim' is not known: use one of euler, heun"
    ) as info:
        resolve_sampler("ddim")
    assert info.value.field == "sampler"


def test_encode_prompts_uses_the_text_encoder() -> None:
    torch.manual_seed(0)
    encoder = BuiltinTextEncoder(TINY.text_encoder)
    with torch.inference_mode():
        prompts = encode_prompts(encoder, "a red boat", "", device="cpu")
        direct = encoder.encode(["a red boat"])
    assert prompts.positive.tokens.shape == (1, TINY.text_encoder.max_length, 64)
    assert torch.equal(prompts.positive.tokens, direct.tokens)
    assert prompts.negative.mask.sum() < prompts.positive.mask.sum()


def test_noise_is_drawn_on_the_cpu_from_the_seed() -> None:
    first = draw_noise((1, 8, 3, 4, 4), seeded_generator(5), "cpu")
    again = draw_noise((1, 8, 3, 4, 4), seeded_generator(5), "cpu")
    other = draw_noise((1, 8, 3, 4, 4), seeded_generator(6), "cpu")
    expected = torch.randn(1, 8, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    assert first.dtype == torch.float32
    assert torch.equal(first, again)
    assert torch.equal(first, expected)
    assert not torch.equal(first, other)


def test_num_tokens_counts_patches() -> None:
    transformer = VideoTransformer(TINY.transformer)
    assert num_tokens(transformer, (3, 4, 6)) == 3 * 2 * 3


@pytest.mark.parametrize("sampler", [EulerSampler(), HeunSampler()])
def test_denoise_applies_guidance_to_the_velocity(sampler: EulerSampler | HeunSampler) -> None:
    """A constant velocity moves x by -velocity from sigma 1 to 0, for either sampler."""
    x = torch.randn(1, 2, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    sigmas = torch.tensor([1.0, 0.6, 0.25, 0.0])
    prompts = constant_prompts(positive=2.0, negative=0.5)
    guided = denoise(text_valued_denoiser, sampler, x, sigmas, prompts, ClassifierFreeGuidance(3))
    plain = denoise(text_valued_denoiser, sampler, x, sigmas, prompts, ClassifierFreeGuidance(1))
    torch.testing.assert_close(guided, x - (0.5 + 3 * (2.0 - 0.5)))
    torch.testing.assert_close(plain, x - 2.0)


def test_denoise_keeps_conditioned_frames_and_reports_steps() -> None:
    x = torch.randn(1, 2, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    clean = torch.full((1, 2, 1, 2, 2), 0.25)
    steps: list[tuple[int, float]] = []
    out = denoise(
        text_valued_denoiser,
        EulerSampler(),
        x,
        torch.tensor([1.0, 0.5, 0.0]),
        constant_prompts(1.0, 0.0),
        ClassifierFreeGuidance(1),
        condition=Conditioning([FrameCondition(clean)], (1, 1, 1)),
        callback=lambda step, sigma, latents: steps.append((step, sigma)),
    )
    assert torch.equal(out[:, :, :1], clean)
    torch.testing.assert_close(out[:, :, 1:], x[:, :, 1:] - 1.0)
    assert steps == [(0, 0.5), (1, 0.0)]


def test_decode_denormalises_with_the_vae_statistics() -> None:
    torch.manual_seed(0)
    vae = CausalVideoVAE(TINY.vae).eval()
    vae.latent_stats.set(torch.linspace(-1, 1, 8), torch.full((8,), 2.0))
    latents = torch.randn(1, 8, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        decoded = decode_latents(vae, latents)
        expected = vae.decode(latents * 2.0 + torch.linspace(-1, 1, 8).view(1, 8, 1, 1, 1))
    torch.testing.assert_close(decoded, expected)


def test_decode_tiled_and_untiled_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    vae = CausalVideoVAE(TINY.vae).eval()
    latents = torch.randn(1, 8, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        whole = decode_latents(vae, latents, tiled_above=5 * 16 * 16)  # just fits: one piece
        direct = vae.decode(latents)
        monkeypatch.setattr(vae, "decode", lambda latents: pytest.fail("decoded in one piece"))
        tiled = decode_latents(vae, latents, tiled_above=5 * 16 * 16 - 1)
    assert whole.shape == (1, 3, 5, 16, 16)
    assert torch.equal(whole, direct)
    torch.testing.assert_close(tiled, whole, atol=1e-4, rtol=0)


def test_decode_with_a_memory_budget_tiles_to_fit_it(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    vae = CausalVideoVAE(TINY.vae).eval()
    latents = torch.randn(1, 8, 2, 4, 40, generator=torch.Generator().manual_seed(3))
    budget = vae.plan_tiles((2, 4, 40), 1 << 40).peak_bytes - 1  # one byte short of untiled
    plan = vae.plan_tiles((2, 4, 40), budget)
    assert plan.tiles == (1, 1, 2)
    assert plan.peak_bytes <= budget
    with torch.inference_mode():
        whole = decode_latents(vae, latents)  # small: one piece
        monkeypatch.setattr(vae, "decode", lambda latents: pytest.fail("decoded in one piece"))
        exact = decode_latents(vae, latents, memory_budget=budget)
        blended = decode_latents(vae, latents, memory_budget=budget, tile_mode="blended")
    torch.testing.assert_close(exact, whole, atol=1e-4, rtol=0)
    assert 0 < (blended - whole).abs().max().item() < 0.12  # approximate overlaps


def test_decode_casts_latents_to_the_vae_dtype() -> None:
    torch.manual_seed(0)
    vae = CausalVideoVAE(TINY.vae).to(torch.float64).eval()
    with torch.inference_mode():
        video = decode_latents(vae, torch.zeros(1, 8, 1, 2, 2))
    assert video.dtype == torch.float64
    assert video.shape == (1, 3, 1, 8, 8)


def test_video_to_uint8_maps_the_model_range_and_layout() -> None:
    video = torch.zeros(2, 3, 2, 1, 3)  # [B, C, F, H, W]; only the first video is returned
    video[0, :, 0, 0] = torch.tensor([[-1.0, 0.0, 1.0]] * 3)
    video[0, 0, 1, 0] = torch.tensor([-5.0, 0.5, 5.0])  # out of range: clipped
    video[1] = 1.0
    frames = video_to_uint8(video)
    assert frames.dtype == torch.uint8
    assert frames.shape == (2, 1, 3, 3)  # [F, H, W, C]
    assert frames[0, 0, :, 0].tolist() == [0, 128, 255]  # 127.5 rounds half to even
    assert frames[1, 0, :, 0].tolist() == [0, 191, 255]
    assert frames[1, 0, :, 1].tolist() == [128, 128, 128]


def test_tail_sigmas_follow_the_schedule_below_the_start() -> None:
    schedule = FlowMatchSchedule(TINY.diffusion)
    tokens = 300
    tail = tail_sigmas(schedule, 4, tokens, 0.5)
    assert tail.dtype == torch.float32
    assert tail.shape == (5,)
    assert tail[0].item() == 0.5
    assert tail[-1].item() == 0.0
    assert bool((tail[1:] < tail[:-1]).all())
    # Starting from 1 the tail is the schedule's own grid.
    torch.testing.assert_close(tail_sigmas(schedule, 6, tokens, 1.0), schedule.sigmas(6, tokens))
    # A tail is the part of a finer full grid below its start: 8 steps from 1 pass through
    # the same sigmas as 4 steps from the full grid's midpoint.
    full = schedule.sigmas(8, tokens)
    torch.testing.assert_close(tail_sigmas(schedule, 4, tokens, full[4].item()), full[4:])


def test_step_progress_counts_and_reports() -> None:
    calls: list[tuple[int, int]] = []
    with StepProgress(
        3, enabled=False, callback=lambda step, total: calls.append((step, total))
    ) as progress:
        hook = progress.step_callback()
        for step in range(3):
            assert hook(step, 0.5, torch.zeros(1)) is None
    assert progress.done == 3
    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_step_progress_shows_a_bar(capsys: pytest.CaptureFixture[str]) -> None:
    with StepProgress(2, description="generating") as progress:
        progress.advance()
        progress.advance()
    err = capsys.readouterr().err
    assert "generating" in err
    assert "2/2" in err
