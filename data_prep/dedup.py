"""Near-duplicate detection for prompt pools that grow to 100K+: MinHash LSH, verified exactly.

Similarity is the Jaccard index of word-bigram sets ("shingles") of the normalised text: NFKC,
case-folded, punctuation dropped, each CJK character a word of its own (Chinese and Japanese are
not space-separated). Changing one word of a 20-word prompt leaves it at about 0.8; unrelated
prompts sit near 0.

``NearDuplicateIndex`` answers "is this text (nearly) a copy of anything added so far?" without
comparing against everything: exact copies through a hash of the normalised text, near copies
through MinHash LSH. Signatures are datasketch's ``MinHash`` (128 permutations); the bands (18 of
7 rows at 0.7, chosen with false negatives weighted 4x false positives, as datasketch's
``MinHashLSH`` would choose them) live in a compact sorted-array index (``_BandIndex``) instead
of ``MinHashLSH``'s dict of sets, which took ~5 KB per prompt. LSH only proposes candidates;
each is re-checked with the exact Jaccard index from the stored normalised text, so nothing is
rejected on an estimate. The price of LSH is recall near the threshold: a pair exactly at the
threshold is proposed with probability ~0.8, a pair 0.1 above it with ~0.99 (docs/data_expand.md).
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from dataclasses import dataclass

import numpy as np
from datasketch import MinHash

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
    keys: np.ndarray | None  # the text's LSH band keys


@functools.lru_cache(maxsize=16)
def lsh_bands(threshold: float, num_perm: int, weights: tuple[float, float] = LSH_WEIGHTS) -> tuple[int, int]:
    """(bands, rows per band) minimising weighted false-positive and false-negative mass.

    A pair of Jaccard s shares at least one band with probability 1 - (1 - s**r)**b; the false
    positive mass is its integral below the threshold, the false negative mass that of its
    complement above.
    """
    low, high = np.linspace(0, threshold, 200), np.linspace(threshold, 1, 200)
    best: tuple[float, int, int] | None = None
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid(1 - (1 - low**r) ** b, low)
            fn = np.trapezoid((1 - high**r) ** b, high)
            cost = weights[0] * fp + weights[1] * fn
            if best is None or cost < best[0]:
                best = (cost, b, r)
    return best[1], best[2]


class _BandIndex:
    """LSH buckets as one sorted uint64 array (band hash -> text index), not a dict of sets.

    datasketch's ``MinHashLSH`` keeps a Python set per bucket per band: ~5 KB per text at 18
    bands, 500 MB at 100K prompts. Here each (band, text) costs 12 bytes in numpy arrays. New
    entries wait in a small dict and are merged into the sorted arrays in batches (a linear
    merge, not a re-sort).
    """

    def __init__(self, bands: int, rows: int, seed: int = 1, merge_every: int = 65536):
        self.bands, self.rows, self.merge_every = bands, rows, merge_every
        rng = np.random.default_rng(seed)
        # a random odd multiplier per signature position and an offset per band: the band's
        # hash is their dot product with its rows (mod 2**64), so equal bands give equal keys
        self._mult = rng.integers(1, 2**63, size=(bands, rows), dtype=np.uint64) | np.uint64(1)
        self._offset = rng.integers(0, 2**63, size=bands, dtype=np.uint64)
        self._keys = np.empty(0, dtype=np.uint64)
        self._ids = np.empty(0, dtype=np.int32)
        self._pending: dict[int, int | list[int]] = {}

    def keys(self, signature: np.ndarray) -> np.ndarray:
        rows = signature[: self.bands * self.rows].astype(np.uint64).reshape(self.bands, self.rows)
        with np.errstate(over="ignore"):
            return (rows * self._mult).sum(axis=1, dtype=np.uint64) + self._offset

    def query(self, keys: np.ndarray) -> set[int]:
        found: set[int] = set()
        if len(self._keys):
            left = np.searchsorted(self._keys, keys, side="left")
            right = np.searchsorted(self._keys, keys, side="right")
            for lo, hi in zip(left.tolist(), right.tolist(), strict=True):
                if hi > lo:
                    found.update(self._ids[lo:hi].tolist())
        for key in keys.tolist():
            hit = self._pending.get(key)
            if hit is not None:
                found.update(hit if isinstance(hit, list) else (hit,))
        return found

    def insert(self, keys: np.ndarray, index: int) -> None:
        for key in keys.tolist():
            hit = self._pending.get(key)
            if hit is None:
                self._pending[key] = index
            elif isinstance(hit, list):
                hit.append(index)
            else:
                self._pending[key] = [hit, index]
        if len(self._pending) >= self.merge_every:
            self._merge()

    def _merge(self) -> None:
        keys, ids = [], []
        for key, hit in self._pending.items():
            for index in hit if isinstance(hit, list) else (hit,):
                keys.append(key)
                ids.append(index)
        new_keys, new_ids = np.array(keys, dtype=np.uint64), np.array(ids, dtype=np.int32)
        order = np.argsort(new_keys, kind="stable")
        new_keys, new_ids = new_keys[order], new_ids[order]
        at = np.searchsorted(self._keys, new_keys, side="right")
        self._keys, self._ids = np.insert(self._keys, at, new_keys), np.insert(self._ids, at, new_ids)
        self._pending = {}


class NearDuplicateIndex:
    """Texts added so far, queryable for exact and near copies at Jaccard >= ``threshold``.

    Memory per text: its normalised words (one string), its label, one 8-byte exact hash, and 12
    bytes per LSH band (18 bands at 0.7); benchmarks/expand_throughput.py measures it.
    """

    def __init__(self, threshold: float, num_perm: int = NUM_PERM, merge_every: int = 65536):
        if not 0 < threshold <= 1:
            raise ValueError(f"similarity threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.num_perm = num_perm
        # Permutations drawn once (datasketch's seed 1) and shared: building them per MinHash is
        # the most expensive part of a MinHash otherwise.
        template = MinHash(num_perm=num_perm, seed=1)
        self._permutations, self._scheme = template.permutations, template.scheme
        bands = lsh_bands(threshold, num_perm) if threshold < 1 else None
        self._lsh = _BandIndex(*bands, merge_every=merge_every) if bands else None
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
        keys = self._lsh.keys(self._minhash(grams).hashvalues) if self._lsh is not None else None
        return _Prepared(joined, self._digest(joined), grams, keys)

    def _find(self, item: _Prepared) -> Match | None:
        earlier = self._exact.get(item.digest)
        if earlier is not None:
            return Match("duplicate", self._labels[earlier], 1.0)
        if self._lsh is None:
            return None
        best: tuple[float, int] | None = None
        for candidate in self._lsh.query(item.keys):
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
            self._lsh.insert(item.keys, index)

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
