"""Image to video: the first frame comes from an image and stays clean while sampling."""

from __future__ import annotations

import torch

from aiprod_core.diffusion import FirstFrameCondition
from aiprod_pipelines.pipelines.base import GenerationPipeline
from aiprod_pipelines.pipelines.images import ImageInput, prepare_image
from aiprod_pipelines.pipelines.progress import ProgressCallback
from aiprod_pipelines.pipelines.request import GeneratedVideo, GenerationRequest
from aiprod_pipelines.pipelines.stages import module_dtype, seeded_generator


class ImageToVideoPipeline(GenerationPipeline):
    """Generate a video that starts from an image::

        pipeline = ImageToVideoPipeline(load_model().model)
        video = pipeline(GenerationRequest("the boat sails away", width=64, height=64), "boat.png")

    The image is resized and center-cropped to ``width x height`` (see
    :mod:`aiprod_pipelines.pipelines.images`), encoded by the VAE (the mode of its
    posterior) into the first latent frame, and kept there by a ``FirstFrameCondition``
    while the other frames are denoised. The causal VAE decodes the first video frame from
    that latent frame alone, so frame 0 is the VAE's reconstruction of the image.
    """

    def __call__(
        self,
        request: GenerationRequest,
        image: ImageInput,
        *,
        progress_callback: ProgressCallback | None = None,
    ) -> GeneratedVideo:
        """The video ``request`` describes, starting from ``image``.

        Raises InvalidRequestError naming the field (``image`` for an image that cannot be
        read or used) for values the model cannot take.
        """
        with torch.inference_mode():
            request = self.prepare(request)
            steps = request.steps_for(self.model_config)
            condition = self.encode_image(image, request.width, request.height)
            generator = seeded_generator(request.seed)
            prompts = self.encode(request)
            shape = self.latent_shape(request.frames, request.height, request.width)
            latents = self.noise(shape, generator)
            with self.open_progress(steps, progress_callback) as progress:
                latents = self.denoise(
                    latents, self.sigmas(steps, shape), prompts, request, progress, condition
                )
            return self.finish(latents, request)

    def encode_image(self, image: ImageInput, width: int, height: int) -> FirstFrameCondition:
        """The first-frame condition of ``image``: its VAE latent ``[1, C, 1, h, w]``."""
        vae = self.model.vae
        pixels = prepare_image(image, width, height).to(self.device, module_dtype(vae))
        return FirstFrameCondition(vae.encode(pixels).mode().float())
