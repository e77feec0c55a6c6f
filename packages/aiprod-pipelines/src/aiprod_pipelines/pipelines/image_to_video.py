"""Image to video, keyframes and continuation: images pinned to frames stay clean while
sampling, and their tokens are told so (sigma 0), as the transformer was trained."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from aiprod_core.diffusion import Conditioning, FrameCondition
from aiprod_pipelines.pipelines.base import GenerationPipeline
from aiprod_pipelines.pipelines.images import (
    ImageCondition,
    ImageInput,
    check_image_frames,
    latent_frame_of,
    prepare_image,
)
from aiprod_pipelines.pipelines.progress import ProgressCallback
from aiprod_pipelines.pipelines.request import GeneratedVideo, GenerationRequest, ResolvedRequest
from aiprod_pipelines.pipelines.stages import module_dtype, seeded_generator


def as_conditions(
    images: ImageInput | ImageCondition | Sequence[ImageCondition],
) -> list[ImageCondition]:
    """``images`` as a list of :class:`ImageCondition` (a bare image means frame 0)."""
    if isinstance(images, ImageCondition):
        return [images]
    if isinstance(images, Sequence) and not isinstance(images, str):
        return [
            image if isinstance(image, ImageCondition) else ImageCondition(image)
            for image in images
        ]
    return [ImageCondition(images)]


class ImageToVideoPipeline(GenerationPipeline):
    """Generate a video through images pinned to its frames::

        pipeline = ImageToVideoPipeline(load_model().model)
        video = pipeline(GenerationRequest("the boat sails away"), "boat.png")  # frame 0
        video = pipeline(request, [ImageCondition("a.png"), ImageCondition("b.png", 16)])

    Each image is resized and center-cropped to ``width x height`` (see
    :mod:`aiprod_pipelines.pipelines.images`) and encoded by the VAE into the latent frame
    that holds its frame: the first frame on its own (as a one-frame video), any later one
    as a still clip of ``1 + temporal`` frames whose second latent frame is the image held
    for ``temporal`` frames. The latents are normalised like every diffusion latent and
    kept clean by a ``Conditioning`` while the other frames are denoised; the transformer
    sees sigma 0 on their tokens. The causal VAE decodes frame 0 from latent frame 0 alone,
    so frame 0 is the VAE's reconstruction of its image.
    """

    def __call__(
        self,
        request: GenerationRequest,
        images: ImageInput | ImageCondition | Sequence[ImageCondition],
        *,
        progress_callback: ProgressCallback | None = None,
    ) -> GeneratedVideo:
        """The video ``request`` describes, through ``images``.

        Raises InvalidRequestError naming the field (``image`` for an image that cannot be
        read or used, a frame outside the video, or two images in one latent frame).
        """
        conditions = as_conditions(images)
        with torch.inference_mode():
            request = self.prepare(request)
            check_image_frames(
                conditions, request.frames, self.model_config.vae.temporal_compression
            )
            steps = request.steps_for(self.model_config)
            conditioning = self.encode_images(conditions, request)
            generator = seeded_generator(request.seed)
            prompts = self.encode(request)
            shape = self.latent_shape(request.frames, request.height, request.width)
            latents = self.noise(shape, generator)
            with self.open_progress(steps, progress_callback) as progress:
                latents = self.denoise(
                    latents, self.sigmas(steps, shape), prompts, request, progress, conditioning
                )
            return self.finish(latents, request)

    def encode_images(
        self, images: Sequence[ImageCondition], request: ResolvedRequest
    ) -> Conditioning:
        """The conditioning of ``images``: each one's normalised latent frame."""
        temporal = self.model_config.vae.temporal_compression
        parts = []
        for condition in images:
            latent_frame = latent_frame_of(condition.frame, temporal)
            latent = self.encode_image(condition.image, request.width, request.height, latent_frame)
            parts.append(FrameCondition(latent, frame=latent_frame))
        return Conditioning(parts, self.model_config.transformer.patch_size)

    def encode_image(
        self, image: ImageInput, width: int, height: int, latent_frame: int = 0
    ) -> torch.Tensor:
        """The normalised latent ``[1, C, 1, h, w]`` of ``image`` for latent frame
        ``latent_frame`` (see the class docs)."""
        vae = self.model.vae
        pixels = prepare_image(image, width, height).to(self.device, module_dtype(vae))
        if latent_frame > 0:
            still = pixels.expand(-1, -1, 1 + vae.config.temporal_compression, -1, -1)
            raw = vae.encode(still).mode()[:, :, 1:2]
        else:
            raw = vae.encode(pixels).mode()
        return vae.normalize(raw.float())
