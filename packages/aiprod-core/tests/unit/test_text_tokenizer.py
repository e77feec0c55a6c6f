"""ByteTokenizer: ids, specials, padding, truncation at character boundaries, round trips."""

from __future__ import annotations

import pytest
import torch

from aiprod_core.text import VOCAB_SIZE, ByteTokenizer
from aiprod_core.text.tokenizer import BOS_ID, EOS_ID, PAD_ID


def test_vocabulary_is_bytes_plus_three_specials() -> None:
    assert VOCAB_SIZE == 259
    assert (BOS_ID, EOS_ID, PAD_ID) == (256, 257, 258)
    assert ByteTokenizer(8).vocab_size == 259


def test_ids_and_mask_for_a_short_prompt() -> None:
    ids, mask = ByteTokenizer(8)(["hi", ""])
    assert ids.dtype == torch.long
    assert mask.dtype == torch.bool
    assert ids.tolist() == [
        [BOS_ID, ord("h"), ord("i"), EOS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID],
        [BOS_ID, EOS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID],
    ]
    assert mask.tolist() == [[True] * 4 + [False] * 4, [True] * 2 + [False] * 6]


@pytest.mark.parametrize("text", ["a red fox", "héllo wörld ✓", "日本語のテキスト", "emoji 🎬🎥"])
def test_round_trip(text: str) -> None:
    tokenizer = ByteTokenizer(64)
    ids, mask = tokenizer([text])
    assert tokenizer.decode(ids[0]) == text
    assert tokenizer.decode(ids[0][mask[0]].tolist()) == text
    assert int(mask.sum()) == len(text.encode("utf-8")) + 2


def test_truncation_keeps_eos_and_fills_max_length() -> None:
    tokenizer = ByteTokenizer(6)
    ids, mask = tokenizer(["abcdefgh"])
    assert ids.tolist() == [[BOS_ID, *b"abcd", EOS_ID]]
    assert mask.all()
    assert tokenizer.decode(ids[0]) == "abcd"


def test_truncation_never_splits_a_multibyte_character() -> None:
    tokenizer = ByteTokenizer(7)  # room for 5 bytes; "é" is 2 bytes
    text = "abcdé"  # 6 bytes: cutting at 5 would split the é
    ids = tokenizer.encode_one(text)
    assert ids == [BOS_ID, *b"abcd", EOS_ID]
    assert tokenizer.decode(ids) == "abcd"
    assert tokenizer.encode_one("€€") == [BOS_ID, *"€".encode(), EOS_ID]  # 3 + 3 bytes


def test_deterministic_and_batch_independent() -> None:
    tokenizer = ByteTokenizer(16)
    alone, _ = tokenizer(["same prompt"])
    batched, _ = tokenizer(["other", "same prompt", "x" * 40])
    assert torch.equal(alone[0], batched[1])
    assert torch.equal(tokenizer(["same prompt"])[0], alone)


def test_empty_batch() -> None:
    ids, mask = ByteTokenizer(5)([])
    assert ids.shape == (0, 5)
    assert mask.shape == (0, 5)


def test_rejects_too_short_max_length_and_bare_strings() -> None:
    with pytest.raises(ValueError, match="max_length must be >= 2"):
        ByteTokenizer(1)
    with pytest.raises(TypeError, match="not one string"):
        ByteTokenizer(8)("a prompt")
    with pytest.raises(TypeError, match=r"prompts\[1\] must be a str, got int"):
        ByteTokenizer(8)(["ok", 3])  # type: ignore[list-item]
