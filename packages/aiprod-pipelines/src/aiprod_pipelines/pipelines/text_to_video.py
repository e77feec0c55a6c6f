"""Text to video: noise from the seed, denoised under the prompt, decoded."""

from __future__ import annotations

import torch

from aiprod_pipelines.pipelines.base import GenerationPipeline
from aiprod_pipelines.pipelines.progress import ProgressCallback
from aiprod_pipelines.pipelines.request import GeneratedVideo, GenerationRequest
from aiprod_pipelines.pipelines.stages import seeded_generator


class TextToVideoPipeline(GenerationPipeline):
    """Generate a video from a text prompt::

        pipeline = TextToVideoPipeline(load_model("aiprod-tiny").model)
        video = pipeline(GenerationRequest("a red ball bouncing", frames=17, seed=7))
        write_video("ball.mp4", video.frames, fps=video.fps)

    The same request (seed included) gives the identical video on the same device.
    """

    def __call__(
        self,
        request: GenerationRequest,
        *,
        progress_callback: ProgressCallback | None = None,
    ) -> GeneratedVideo:
        """The video ``request`` describes; ``progress_callback(step, total)`` after each step.

        Raises InvalidRequestError (naming the field) for values the model cannot take.
        """
        with torch.inference_mode():
            request = self.prepare(request)
            steps = request.steps_for(self.model_config)
            generator = seeded_generator(request.seed)
            prompts = self.encode(request)
            shape = self.latent_shape(request.frames, request.height, request.width)
            latents = self.noise(shape, generator)
            with self.open_progress(steps, progress_callback) as progress:
                latents = self.denoise(
                    latents, self.sigmas(steps, shape), prompts, request, progress
                )
            return self.finish(latents, request)
