"""Text → token ids, the one way both training and serving compute them."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


class TextTokenizer:
    """WordPiece tokenization from a ``tokenizer.json``; pads a batch to its longest text.

    ``pad_to_multiple`` rounds that width up, so serving requests fall into a few shapes that Triton's dynamic
    batcher can group (it batches only equal shapes); the attention mask makes the padding invisible to the model.
    """

    def __init__(self, tokenizer_json: Path, max_length: int, pad_to_multiple: int = 1):
        self.max_length, self.pad_to_multiple = max_length, pad_to_multiple
        self._tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self._tokenizer.enable_truncation(max_length)
        self._tokenizer.no_padding()

    def token_lengths(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self._tokenizer.encode_batch(texts)]

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        return self.pad(self.ids(texts))

    def ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids, truncated, unpadded (the gateway's batcher pads rows of several requests together)."""
        return [e.ids for e in self._tokenizer.encode_batch(texts)]

    def pad(self, rows: list[list[int]]) -> dict[str, np.ndarray]:
        longest = max(len(ids) for ids in rows)
        width = min(-(-longest // self.pad_to_multiple) * self.pad_to_multiple, self.max_length)
        input_ids = np.zeros((len(rows), width), dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, ids in enumerate(rows):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}


@lru_cache
def load_tokenizer(model_dir: Path, tokenizer_file: str, max_length: int, pad_to_multiple: int) -> TextTokenizer:
    """The served model's tokenizer, built once per process."""
    return TextTokenizer(model_dir / tokenizer_file, max_length, pad_to_multiple)
