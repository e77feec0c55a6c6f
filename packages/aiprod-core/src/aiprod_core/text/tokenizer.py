"""A byte-level tokenizer: every UTF-8 string has a token sequence, and no vocabulary file."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from aiprod_core.text.protocol import check_prompts

BYTE_VOCAB = 256
BOS_ID = 256
EOS_ID = 257
PAD_ID = 258
VOCAB_SIZE = 259  # 256 byte values + BOS + EOS + PAD


def _is_continuation(byte: int) -> bool:
    """True for the 2nd..4th bytes of a multi-byte UTF-8 character (0b10xxxxxx)."""
    return byte & 0xC0 == 0x80


class ByteTokenizer:
    """Maps text to ``[BOS, utf-8 bytes..., EOS, PAD...]`` of exactly ``max_length`` ids.

    Ids 0-255 are the byte values, then ``BOS_ID`` = 256, ``EOS_ID`` = 257 and ``PAD_ID`` =
    258, so the vocabulary has ``VOCAB_SIZE`` = 259 entries. A prompt longer than
    ``max_length - 2`` bytes is cut at the last whole character that fits (never inside a
    multi-byte character) and still ends with EOS, so every row has at least BOS and EOS
    as real tokens. The result is a pure function of the text: no state, no randomness.
    """

    vocab_size = VOCAB_SIZE
    bos_id = BOS_ID
    eos_id = EOS_ID
    pad_id = PAD_ID

    def __init__(self, max_length: int) -> None:
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2 (room for BOS and EOS), got {max_length}")
        self.max_length = max_length

    def encode_one(self, text: str) -> list[int]:
        """The ids of one prompt, BOS and EOS included, without padding."""
        data = text.encode("utf-8")
        room = self.max_length - 2
        if len(data) > room:
            cut = room
            while cut > 0 and _is_continuation(data[cut]):
                cut -= 1
            data = data[:cut]
        return [BOS_ID, *data, EOS_ID]

    def __call__(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, mask)``: ids ``[B, max_length]`` int64 and mask ``[B, max_length]`` bool."""
        rows = [self.encode_one(text) for text in check_prompts(prompts)]
        ids = torch.full((len(rows), self.max_length), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(rows), self.max_length), dtype=torch.bool)
        for index, row in enumerate(rows):
            ids[index, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[index, : len(row)] = True
        return ids, mask

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The text of one row of ids; BOS, EOS and PAD are dropped."""
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        data = bytes(value for value in values if 0 <= value < BYTE_VOCAB)
        return data.decode("utf-8", errors="replace")
