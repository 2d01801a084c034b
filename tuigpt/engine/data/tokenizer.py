"""Tokenizers: one character per token, or a tiktoken BPE encoding; both save to JSON metadata."""

from __future__ import annotations

import difflib
import os

import numpy as np

from tuigpt.run.errors import UserError


def did_you_mean(value: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(value, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Tokenizer:
    """Text <-> token ids: a ``CharTokenizer`` or a ``TiktokenTokenizer``, saved and restored as JSON metadata."""

    name: str
    vocab_size: int
    eot_token: int | None = None  # the end-of-text token put between documents (None: characters, a newline)

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def encode_array(self, text: str) -> np.ndarray:
        raise NotImplementedError

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def unknown_chars(self, text: str) -> str:
        """The characters of ``text`` this tokenizer has no token for (dropped when encoding), in order."""
        return ""

    def token_bytes(self) -> np.ndarray:
        """The UTF-8 bytes each token id spells (int32, one per id); 0 for special tokens such as end-of-text,
        which stand for no text (what bits per byte divides by)."""
        raise NotImplementedError

    def to_meta(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_meta(cls, meta: dict) -> Tokenizer:
        """Rebuild a tokenizer saved by ``to_meta``; UserError when ``meta`` is not one."""
        kind = meta.get("kind") if isinstance(meta, dict) else None
        if kind == "char":
            chars = meta.get("chars")
            valid = isinstance(chars, str) and chars and len(set(chars)) == len(chars)
            if valid and meta.get("vocab_size", len(chars)) == len(chars):
                return CharTokenizer(chars)
        elif kind == "tiktoken":
            name, size = meta.get("name"), meta.get("vocab_size")
            if isinstance(name, str) and name in tiktoken_names():
                tok = TiktokenTokenizer(name)
                if size is None or size == tok.vocab_size:
                    return tok
        raise UserError(f"invalid tokenizer metadata {str(meta)[:80]!r}: the checkpoint or token cache is damaged")


class CharTokenizer(Tokenizer):
    """One token per character of a fixed vocabulary (sorted by code point).

    Characters outside the vocabulary are skipped when encoding (a prompt may contain them);
    ids outside the vocabulary are skipped when decoding.
    """

    name = "char"

    def __init__(self, chars: str) -> None:
        self.chars = chars
        self.vocab_size = len(chars)
        codepoints = np.array([ord(c) for c in chars], dtype=np.uint32)
        self._order = np.argsort(codepoints)  # search works even if chars came unsorted
        self._sorted = codepoints[self._order]

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls("".join(sorted(set(text))))

    def encode_array(self, text: str) -> np.ndarray:
        # vectorised lookup: code points -> position in the sorted vocabulary (1M chars in ~10 ms)
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        pos = np.minimum(np.searchsorted(self._sorted, cps), len(self._sorted) - 1)
        known = self._sorted[pos] == cps
        return self._order[pos[known]].astype(np.int64)

    def decode(self, ids: list[int]) -> str:
        n = self.vocab_size
        return "".join(self.chars[i] for i in ids if 0 <= i < n)

    def unknown_chars(self, text: str) -> str:
        known = set(self.chars)
        return "".join(dict.fromkeys(c for c in text if c not in known))

    def token_bytes(self) -> np.ndarray:
        return np.array([len(c.encode("utf-8", "surrogatepass")) for c in self.chars], dtype=np.int32)

    def to_meta(self) -> dict:
        return {"kind": "char", "chars": self.chars, "vocab_size": self.vocab_size}


class TiktokenTokenizer(Tokenizer):
    """A tiktoken BPE encoding ("gpt2", "cl100k_base", ...); special tokens are encoded as plain text."""

    def __init__(self, name: str) -> None:
        import tiktoken

        try:
            self._enc = tiktoken.get_encoding(name)
        except Exception as e:  # requests/urllib/OSError/hash errors: tiktoken fetches its files lazily
            where = os.environ.get("TIKTOKEN_CACHE_DIR") or "its default cache"
            raise UserError(
                f"could not load tiktoken encoding {name!r} from {where} ({type(e).__name__}: {str(e)[:120]}): "
                "set TIKTOKEN_CACHE_DIR to a filled tiktoken cache or go online once"
            ) from e
        self.name = name
        self.vocab_size = self._enc.n_vocab
        self.eot_token = getattr(self._enc, "eot_token", None)
        self._token_bytes: np.ndarray | None = None

    def encode_array(self, text: str) -> np.ndarray:
        return np.asarray(self._enc.encode_ordinary(text), dtype=np.int64)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Documents encoded on tiktoken's threads (one per core)."""
        return self._enc.encode_ordinary_batch(texts, num_threads=os.cpu_count() or 1)

    def token_bytes(self) -> np.ndarray:
        if self._token_bytes is None:  # 50k lookups: ~20 ms, once
            special = {self._enc.encode_single_token(t) for t in self._enc.special_tokens_set}
            self._token_bytes = np.array([0 if i in special else len(self._enc.decode_single_token_bytes(i))
                                          for i in range(self.vocab_size)], dtype=np.int32)
        return self._token_bytes

    def decode(self, ids: list[int]) -> str:
        # a model with a padded vocabulary (nanoGPT's 50304) may sample ids tiktoken does not know
        n = self.vocab_size
        return self._enc.decode([i for i in ids if 0 <= i < n])

    def to_meta(self) -> dict:
        return {"kind": "tiktoken", "name": self.name, "vocab_size": self.vocab_size}


def tiktoken_names() -> list[str]:
    import tiktoken

    return list(tiktoken.list_encoding_names())


def check_tokenizer_name(name: str) -> None:
    valid = ["char", *tiktoken_names()]
    if name not in valid:
        raise UserError(
            f"unknown tokenizer {name!r}{did_you_mean(name, valid)}; valid: auto, {', '.join(valid)}"
        )
