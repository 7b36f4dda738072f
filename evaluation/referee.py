"""The gold referee: a programmatic writing-quality score that stands in for human raters.

It is a stand-in, not a judgement of writing: people read for meaning, voice and craft; this
reads surface features that correlate with them. It exists so the pipeline
(``recipe.rlmr.pipeline``) can play the paper's roles on a CPU: it labels the preference pairs a
writing RM learns from (as human raters would), and it judges the trained policies (as the
paper's experts did), through the same ``evaluation writingbench`` and ``pairwise`` commands a
served critic would (``recipe.rlmr.dev.servers.referee``).

The score of a response to a prompt, in [0, 1] (x 10 where a 1-10 scale is asked for)::

    score = clip(0.35 * fit + 0.25 * distinct2 + 0.25 * relevance + 0.15 * complete - boilerplate, 0, 1)

    fit        length fit, peaking inside a band [lo, hi] of words: w / lo below it, 1 inside,
               1 - (w - hi) / hi above it (0 at twice hi). Not "longer is better": past the band
               every extra word costs.
    distinct2  distinct word bigrams / word bigrams (repetition lowers it); 0 under two words.
    relevance  the share of the prompt's content words (>= 4 letters, not a stop or constraint word)
               that the response uses, counted up to ``RELEVANCE_CAP`` words: stuffing more does not pay.
    complete   1 when the last character ends a sentence (. ! ? or a closing quote/bracket after
               one): an answer cut by the token budget scores 0 here.
    boilerplate 0.15 per assistant boilerplate or cliche phrase found (``BOILERPLATE``), at most 0.45.

It never reads the prompt's constraint spec nor any verdict: obeying "fewer than 50 words" earns
nothing by itself (the length band is the referee's taste, set per preset, not the prompt's limit).

Label noise (``noisy_preference``): human raters disagree, so a pair's label is drawn, not read off:
P(a preferred) = sigmoid((score_a - score_b) / temperature), seeded per pair. ``temperature`` 0 gives
the noiseless order (ties broken by the draw).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

WORD = re.compile(r"[A-Za-z0-9']+")
SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*$")
RELEVANCE_CAP = 3
BOILERPLATE_PENALTY = 0.15
BOILERPLATE_MAX = 0.45
BOILERPLATE = (
    "as an ai",
    "language model",
    "sure, here",
    "here is a",
    "here's a",
    "i hope this",
    "i hope you enjoy",
    "feel free to",
    "let me know if",
    "in conclusion",
    "once upon a time",
    "in a world where",
    "tapestry",
    "testament to",
)
# words a prompt uses to state its constraints or the task, not its subject
STOP_WORDS = frozenset(
    """about above after again against also answer around because been before being below between both
    could does doing down during each every fewer from further have having here into just least less letter
    like make many more most must only other over poem response same should some story such than that their
    them then there these they this those through under until very well were what when where which while
    with would write your words word sentence sentences paragraph paragraphs include including keyword keywords
    exactly short brief whole entire lowercase uppercase capital letters title wrap double quotation marks
    format section sections bullet points markdown highlight response answer times least most using use without
    comma commas end ending phrase postscript""".split()
)


@dataclass(frozen=True)
class RefereeBand:
    """The length band (in words) inside which the referee's length fit is 1."""

    lo: int = 40
    hi: int = 110

    def __post_init__(self):
        if not 0 < self.lo <= self.hi:
            raise ValueError(f"referee band needs 0 < lo <= hi, got lo={self.lo}, hi={self.hi}")


@dataclass(frozen=True)
class RefereeScore:
    score: float  # [0, 1]
    fit: float
    distinct2: float
    relevance: float
    complete: float
    boilerplate: float
    words: int

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def words_of(text: str) -> list[str]:
    return WORD.findall(text.lower())


def length_fit(words: int, band: RefereeBand) -> float:
    if words < band.lo:
        return words / band.lo
    if words <= band.hi:
        return 1.0
    return max(0.0, 1.0 - (words - band.hi) / band.hi)


def distinct_bigrams(tokens: list[str]) -> float:
    bigrams = list(zip(tokens, tokens[1:], strict=False))
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def content_words(prompt: str) -> set[str]:
    return {w for w in words_of(prompt) if len(w) >= 4 and w not in STOP_WORDS and not w.isdigit()}


def relevance(prompt: str, tokens: list[str]) -> float:
    wanted = content_words(prompt)
    if not wanted:
        return 1.0  # nothing to be relevant to: no one loses
    hits = len(wanted & set(tokens))
    return min(1.0, hits / min(RELEVANCE_CAP, len(wanted)))


def boilerplate(text: str) -> float:
    lowered = text.lower()
    found = sum(phrase in lowered for phrase in BOILERPLATE)
    return min(BOILERPLATE_MAX, BOILERPLATE_PENALTY * found)


DEFAULT_BAND = RefereeBand()


def score(prompt: str, response: str, band: RefereeBand = DEFAULT_BAND) -> RefereeScore:
    """The referee's score of ``response`` to ``prompt`` (module docstring)."""
    tokens = words_of(response)
    parts = {
        "fit": length_fit(len(tokens), band),
        "distinct2": distinct_bigrams(tokens),
        "relevance": relevance(prompt, tokens) if tokens else 0.0,
        "complete": 1.0 if SENTENCE_END.search(response.strip()) else 0.0,
        "boilerplate": boilerplate(response),
    }
    total = 0.35 * parts["fit"] + 0.25 * parts["distinct2"] + 0.25 * parts["relevance"] + 0.15 * parts["complete"]
    total = min(1.0, max(0.0, total - parts["boilerplate"]))
    return RefereeScore(score=total, words=len(tokens), **parts)


def critic_grade(value: float) -> int:
    """A [0, 1] score on WritingBench's 1-10 integer scale."""
    return int(min(10, max(1, round(1 + 9 * value))))


def noisy_preference(score_a: float, score_b: float, temperature: float, rng: random.Random) -> bool:
    """True when a is preferred: drawn with P = sigmoid((score_a - score_b) / temperature)."""
    if temperature < 0:
        raise ValueError(f"label temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return score_a > score_b or (score_a == score_b and rng.random() < 0.5)
    p = 1.0 / (1.0 + math.exp(-(score_a - score_b) / temperature))
    return rng.random() < p
