"""`PromptTokenizer`: the Llama-2 SentencePiece-BPE tokenizer of an OpenVLA checkpoint.

We read `tokenizer.json` with the `tokenizers` library directly — exactly the ids the official fast
tokenizer produces, independent of how a transformers release rebuilds Llama tokenizers. BOS is added
by us (``add_bos_token`` in tokenizer_config.json), never EOS at inference.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

from vla_parl.errors import CheckpointError

__all__ = ["PromptTokenizer", "TOKENIZER_FILES"]

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model")


class PromptTokenizer:
    """Text ↔ token ids with the checkpoint's vocabulary."""

    def __init__(self, tokenizer, bos_token: str = "<s>", eos_token: str = "</s>", pad_token: str = "<PAD>",
                 add_bos_token: bool = True, source_dir: Path | None = None) -> None:
        self._tok = tokenizer
        self.add_bos_token = add_bos_token
        self.source_dir = source_dir
        ids = {name: tokenizer.token_to_id(tok) for name, tok in
               (("bos", bos_token), ("eos", eos_token), ("pad", pad_token))}
        missing = [name for name, i in ids.items() if i is None and name != "pad"]
        if missing:
            raise CheckpointError(f"tokenizer has no id for {missing} token(s) ({bos_token!r}, {eos_token!r})")
        self.bos_token_id: int = ids["bos"]
        self.eos_token_id: int = ids["eos"]
        self.pad_token_id: int | None = ids["pad"]
        self.space_token_id: int = tokenizer.token_to_id("▁") if tokenizer.token_to_id("▁") is not None else 29871

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "PromptTokenizer":
        from tokenizers import Tokenizer

        directory = Path(directory)
        path = directory / "tokenizer.json"
        if not path.is_file():
            raise CheckpointError(f"{path} not found: the checkpoint needs a tokenizer.json (the fast-tokenizer "
                                  "file every OpenVLA checkpoint on the hub ships)")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
            raise CheckpointError(f"{path} could not be read as a tokenizer ({exc}); the file is corrupt") from exc
        cfg_path = directory / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}

        def _token(key: str, default: str) -> str:
            value = cfg.get(key, default)
            return value["content"] if isinstance(value, dict) else value

        return cls(tok, bos_token=_token("bos_token", "<s>"), eos_token=_token("eos_token", "</s>"),
                   pad_token=_token("pad_token", "<PAD>"), add_bos_token=cfg.get("add_bos_token", True),
                   source_dir=directory)

    @property
    def vocab_size(self) -> int:
        """Ids in the base vocabulary, without added tokens such as <PAD> (32000 for Llama-2)."""
        return self._tok.get_vocab_size(with_added_tokens=False)

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if self.add_bos_token if add_bos is None else add_bos:
            ids = [self.bos_token_id, *ids]
        return ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        encoded = self._tok.encode_batch(list(texts), add_special_tokens=False)
        prefix = [self.bos_token_id] if self.add_bos_token else []
        return [prefix + e.ids for e in encoded]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def save(self, directory: str | Path) -> None:
        """Write tokenizer files into `directory` (copies the originals when loaded from disk)."""
        directory = Path(directory)
        if self.source_dir is not None and self.source_dir.resolve() != directory.resolve():
            for name in TOKENIZER_FILES:
                if (self.source_dir / name).is_file():
                    shutil.copyfile(self.source_dir / name, directory / name)
            return
        if self.source_dir is not None:
            return  # saving into the directory we were loaded from: files are already there
        self._tok.save(str(directory / "tokenizer.json"))
        special = {"bos_token": self._tok.id_to_token(self.bos_token_id),
                   "eos_token": self._tok.id_to_token(self.eos_token_id),
                   "unk_token": self._tok.id_to_token(0)}
        if self.pad_token_id is not None:
            special["pad_token"] = self._tok.id_to_token(self.pad_token_id)
        (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
        config = {**special, "add_bos_token": self.add_bos_token, "add_eos_token": False,
                  "tokenizer_class": "LlamaTokenizer", "model_max_length": 2048, "padding_side": "right",
                  "clean_up_tokenization_spaces": False, "legacy": True}
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
