"""Everything the trainer reads: manifests, buckets, clips, the latent cache, synthetic data.

Reading order: ``manifest`` (one JSON line per clip) -> ``buckets`` and ``bucket_sampler``
(clips grouped by shape) -> ``ingest`` and ``preparation`` (real videos fitted to buckets)
-> ``clip_dataset`` (pixels for the VAE) -> ``latent_cache`` and ``latent_pairs`` (VAE
latents and text embeddings on disk, for the transformer and the upsampler). ``synthetic``
and ``synthetic_dataset`` make the demo's clips; ``dataset_stats`` and ``contact_sheet``
describe a dataset to people.
"""
