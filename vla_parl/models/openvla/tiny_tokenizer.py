"""Build a small Llama-style tokenizer locally (no hub download) with Llama-2's id layout.

The result has exactly 32000 ids like Llama-2 (so OpenVLA's action tokens 31744..31999 exist), plus
``<PAD>`` = 32000: ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2, byte-fallback pieces ``<0x00>``..``<0xFF>`` 3..258,
single characters and whole-word pieces for the words given (each word built by a chain of BPE merges),
``"▁"`` at 29871 (the piece OpenVLA appends before generating), and unused filler pieces elsewhere.
It is a real SentencePiece-style BPE with the same normaliser (prepend ``▁``, spaces → ``▁``).
"""

from __future__ import annotations

import string
from typing import Iterable

__all__ = ["build_tiny_tokenizer", "DEFAULT_WORDS"]

VOCAB_SIZE = 32000
SPACE_PIECE_ID = 29871

DEFAULT_WORDS = (
    "In What Out action should the robot take to pick up place put push pull lift reach grasp move open close "
    "turn on off red green blue yellow pink purple orange block cube drawer slider left right button switch "
    "light bulb led into in of a an and from top bottom table cup spoon towel pot stack rotate slide "
    "forward backward front back"
).split()


def build_tiny_tokenizer(words: Iterable[str] = DEFAULT_WORDS):
    """Return a `tokenizers.Tokenizer` with 32000 ids (+ <PAD>) and whole-word pieces for `words`."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE

    pieces: list[str] = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    merges: list[tuple[str, str]] = []
    seen: set[str] = set(pieces)

    def add(piece: str) -> None:
        if piece not in seen and piece != "▁":
            seen.add(piece)
            pieces.append(piece)

    for ch in string.ascii_letters + string.digits + string.punctuation:
        add(ch)
    for ch in string.ascii_letters + string.digits:
        add("▁" + ch)
        merges.append(("▁", ch))
    for word in dict.fromkeys(words):
        prefix = "▁" + word[0]
        for ch in word[1:]:
            merges.append((prefix, ch))
            prefix += ch
            add(prefix)
    if len(pieces) >= SPACE_PIECE_ID:
        raise ValueError(f"too many words for a tiny tokenizer ({len(pieces)} pieces)")
    vocab: dict[str, int] = {piece: i for i, piece in enumerate(pieces)}
    for i in range(len(pieces), VOCAB_SIZE):
        vocab["▁" if i == SPACE_PIECE_ID else f"<unused{i}>"] = i

    tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ("<unk>", "<s>", "</s>")])
    tok.add_special_tokens([AddedToken("<PAD>", normalized=False, special=True)])
    return tok
