"""Near-duplicate detection for prompt pools that grow to 100K+: MinHash LSH, verified exactly.

Similarity is the Jaccard index of word-bigram sets ("shingles") of the normalised text: NFKC,
case-folded, punctuation dropped, each CJK character a word of its own (Chinese and Japanese are
not space-separated). Changing one word of a 20-word prompt leaves it at about 0.8; unrelated
prompts sit near 0.

``NearDuplicateIndex`` answers "is this text (nearly) a copy of anything added so far?" without
comparing against everything: exact copies through a hash of the normalised text, near copies
through datasketch's ``MinHashLSH`` (128 permutations, bands chosen by datasketch with false
negatives weighted 4x false positives). LSH only proposes candidates; each one is re-checked with
the exact Jaccard index computed from the stored normalised text, so nothing is rejected on an
estimate. The price of LSH is recall near the threshold: a pair exactly at the threshold is
proposed with probability ~0.8, a pair 0.1 above it with ~0.99 (see docs/data_expand.md).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from datasketch import MinHash, MinHashLSH

_CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK_CHARS}]|[^\W_{_CJK_CHARS}]+")
NUM_PERM = 128
LSH_WEIGHTS = (0.2, 0.8)  # (false positive, false negative): favour recall, candidates are verified anyway


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


def shingles(words: list[str]) -> set[str]:
    if len(words) < 2:
        return set(words)
    return {f"{a} {b}" for a, b in zip(words, words[1:], strict=False)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True)
class Match:
    reason: str  # "duplicate" (same normalised text) or "near_duplicate"
    label: str  # where the earlier text came from, e.g. "seeds.jsonl row 3"
    similarity: float


@dataclass
class _Prepared:
    joined: str
    digest: bytes
    grams: set[str]
    minhash: MinHash | None


def _band_key(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=8).digest()  # 8 bytes per band entry instead of r * 4


class NearDuplicateIndex:
    """Texts added so far, queryable for exact and near copies at Jaccard >= ``threshold``.

    Memory per text: its normalised words (one string), one 8-byte exact hash, and one 8-byte key
    in each LSH band (~18 bands at 0.7); see benchmarks/expand_throughput.py for measured figures.
    """

    def __init__(self, threshold: float, num_perm: int = NUM_PERM):
        if not 0 < threshold <= 1:
            raise ValueError(f"similarity threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.num_perm = num_perm
        # Permutations drawn once (datasketch's seed 1) and shared: building them per MinHash is
        # the most expensive part of a MinHash otherwise.
        template = MinHash(num_perm=num_perm, seed=1)
        self._permutations, self._scheme = template.permutations, template.scheme
        self._lsh = (
            MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS, hashfunc=_band_key)
            if threshold < 1
            else None
        )
        self._exact: dict[bytes, int] = {}
        self._texts: list[str] = []  # normalised words joined by spaces, for the exact re-check
        self._labels: list[str] = []

    def __len__(self) -> int:
        return len(self._texts)

    def _minhash(self, grams: set[str]) -> MinHash:
        minhash = MinHash(num_perm=self.num_perm, permutations=self._permutations, scheme=self._scheme)
        minhash.update_batch([g.encode("utf-8") for g in grams])
        return minhash

    @staticmethod
    def _digest(joined: str) -> bytes:
        return hashlib.blake2b(joined.encode("utf-8"), digest_size=8).digest()

    def _prepare(self, text: str) -> _Prepared:
        words = tokens(text)
        joined = " ".join(words)
        grams = shingles(words)
        minhash = self._minhash(grams) if self._lsh is not None else None
        return _Prepared(joined, self._digest(joined), grams, minhash)

    def _find(self, item: _Prepared) -> Match | None:
        earlier = self._exact.get(item.digest)
        if earlier is not None:
            return Match("duplicate", self._labels[earlier], 1.0)
        if self._lsh is None:
            return None
        best: tuple[float, int] | None = None
        for candidate in self._lsh.query(item.minhash):
            similarity = jaccard(item.grams, shingles(self._texts[candidate].split(" ")))
            if similarity >= self.threshold and (best is None or similarity > best[0]):
                best = (similarity, candidate)
        return None if best is None else Match("near_duplicate", self._labels[best[1]], round(best[0], 3))

    def _add(self, item: _Prepared, label: str) -> None:
        index = len(self._texts)
        self._exact.setdefault(item.digest, index)
        self._texts.append(item.joined)
        self._labels.append(label)
        if self._lsh is not None:
            self._lsh.insert(index, item.minhash, check_duplication=False)

    def find(self, text: str) -> Match | None:
        """The closest earlier text at or above the threshold (exact copies first), or None."""
        return self._find(self._prepare(text))

    def add(self, text: str, label: str) -> None:
        """Add unconditionally (seeds, a resumed output): later texts are checked against it."""
        self._add(self._prepare(text), label)

    def check_and_add(self, text: str, label: str) -> Match | None:
        """``find``, and ``add`` when nothing was found."""
        item = self._prepare(text)
        match = self._find(item)
        if match is None:
            self._add(item, label)
        return match
