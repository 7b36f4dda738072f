"""Every phrasing `augment` can append means what its spec checks.

``PHRASINGS`` below is a reviewed table: one row per phrasing in ``data_prep.augment.CATALOG``,
copied verbatim, with the relation a reader takes it to mean. Counted constraints are probed at
the boundary, in the unit the template counts (N-1, N and N+1 words, lines, stanzas or
characters around every stated bound); the others with responses that obey and that disobey the
sentence. Each probe goes through ``rewards.constraints.check_instructions`` with the spec the
template emits for the same parameters. A phrasing that says one thing while its spec checks
another would reward the policy for disobeying its own prompt; a phrasing added or reworded
without a reviewed row here fails ``test_the_table_covers_every_phrasing``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from data_prep.augment import CATALOG, TEMPLATES, _phrase
from rewards.constraints import check_instructions

# ---- units: a response holding exactly n of what a template counts ----------------------------


def words(n: int) -> str:
    return " ".join(["rain"] * n)


def lines(n: int) -> str:
    return "\n".join(["the rain falls"] * n)


def stanzas(n: int) -> str:
    return "\n\n".join(["the rain falls\non the quiet sea"] * n)


def chinese_chars(n: int) -> str:  # no whitespace: every character counts
    return "春" * n


def chinese_paragraphs(n: int) -> str:
    return "\n\n".join(["春风细雨。"] * n)


# ---- what a phrasing means ---------------------------------------------------------------------


@dataclass(frozen=True)
class Between:
    """At least ``params[low]`` and at most ``params[high]`` of ``unit`` (both bounds inclusive)."""

    low: str
    high: str
    unit: Callable[[int], str]

    def probes(self, params: dict[str, Any]) -> list[tuple[str, bool]]:
        low, high = params[self.low], params[self.high]
        counts = {low - 1: False, low: True, low + 1: True, high - 1: True, high: True, high + 1: False}
        return [(self.unit(n), ok) for n, ok in counts.items()]

    def stated(self) -> tuple[str, ...]:
        return (self.low, self.high)


@dataclass(frozen=True)
class AtMost:
    bound: str
    unit: Callable[[int], str]

    def probes(self, params: dict[str, Any]) -> list[tuple[str, bool]]:
        n = params[self.bound]
        return [(self.unit(n - 1), True), (self.unit(n), True), (self.unit(n + 1), False)]

    def stated(self) -> tuple[str, ...]:
        return (self.bound,)


@dataclass(frozen=True)
class Exactly:
    count: str
    unit: Callable[[int], str]

    def probes(self, params: dict[str, Any]) -> list[tuple[str, bool]]:
        n = params[self.count]
        return [(self.unit(n - 1), False), (self.unit(n), True), (self.unit(n + 1), False)]

    def stated(self) -> tuple[str, ...]:
        return (self.count,)


@dataclass(frozen=True)
class Examples:
    """Responses a reader would call obeying / disobeying the sentence (built from the parameters)."""

    obey: Callable[[dict[str, Any]], list[str]]
    disobey: Callable[[dict[str, Any]], list[str]]

    def probes(self, params: dict[str, Any]) -> list[tuple[str, bool]]:
        return [(r, True) for r in self.obey(params)] + [(r, False) for r in self.disobey(params)]

    def stated(self) -> tuple[str, ...]:
        return ()


BODY = "the boats come home in the evening light and the gulls rest on the old stone wall"
TITLE = Examples(
    obey=lambda p: ["<<Harbour Lights>>\nThe boats come home.", "<<Harbour Lights>>\n\nThe boats come home."],
    disobey=lambda p: [
        "The boats come home.",
        "Harbour Lights\nThe boats come home.",  # no brackets
        "<<Harbour Lights>> The boats come home.",  # not on a line of its own
        "The boats come home.\n<<Harbour Lights>>",  # not first
    ],
)
TITLE_ZH = Examples(
    obey=lambda p: ["<<归途>>\n春风细雨。"],
    disobey=lambda p: ["春风细雨。", "<<归途>>春风细雨。", "归途\n春风细雨。"],
)
KEYWORDS = Examples(
    obey=lambda p: [f"The {p['keywords'][0]} and the {p['keywords'][1]} stayed."],
    disobey=lambda p: [f"The {p['keywords'][0]} stayed.", f"The {p['keywords'][1]} stayed.", "Nothing stayed."],
)
FORBIDDEN = Examples(
    obey=lambda p: ["The boats come home."],
    disobey=lambda p: [
        f"The {p['forbidden_words'][0]} began.",
        f"The {p['forbidden_words'][1]} began.",
        f"{p['forbidden_words'][0].capitalize()} it began.",
    ],
)
LOWERCASE = Examples(obey=lambda p: [BODY], disobey=lambda p: [BODY.capitalize(), BODY.replace("gulls", "Gulls")])
NO_COMMA = Examples(obey=lambda p: [BODY], disobey=lambda p: [BODY.replace("light and", "light, and")])
END_PHRASE = Examples(
    obey=lambda p: [f"The boats came home and {p['end_phrase']}"],
    disobey=lambda p: [
        f"{p['end_phrase']} and the boats came home",
        "The boats came home.",
        f"The boats came home and {p['end_phrase'].split()[-1]}",  # only the phrase's last word
        f"The boats came home and {p['end_phrase']}. Goodbye",
    ],
)
POSTSCRIPT = Examples(
    obey=lambda p: ["The boats came home.\n\nP.S. thank you for reading", "The boats came home.\nP.S. see you"],
    disobey=lambda p: ["The boats came home.", "The boats came home. PS thank you"],
)

WORD_RANGE = Between("min_words", "max_words", words)
CHAR_RANGE = Between("min_chars", "max_chars", chinese_chars)

# Reviewed: (kind, phrasing verbatim, what it means). Keep one row per phrasing.
PHRASINGS = [
    ("word_range", "Write between {min_words} and {max_words} words.", WORD_RANGE),
    ("word_range", "Your piece must be {min_words} to {max_words} words long.", WORD_RANGE),
    ("max_words", "Use no more than {max_words} words.", AtMost("max_words", words)),
    ("max_words", "Keep it to {max_words} words or fewer.", AtMost("max_words", words)),
    ("title", "Give it a title wrapped in double angular brackets, such as <<title>>, alone on the first line.", TITLE),
    ("title", "Start with a title on its own line, in the form <<your title>>.", TITLE),
    ("keywords", 'Include the words "{k0}" and "{k1}".', KEYWORDS),
    ("keywords", 'Make sure the words "{k0}" and "{k1}" both appear.', KEYWORDS),
    ("forbidden_words", 'Do not use the words "{f0}" or "{f1}".', FORBIDDEN),
    ("forbidden_words", 'Avoid the words "{f0}" and "{f1}" entirely.', FORBIDDEN),
    ("stanzas", "Write exactly {stanzas} stanzas separated by blank lines.", Exactly("stanzas", stanzas)),
    ("stanzas", "Arrange it in {stanzas} stanzas, with a blank line between stanzas.", Exactly("stanzas", stanzas)),
    ("max_lines", "Use at most {max_lines} lines.", AtMost("max_lines", lines)),
    ("max_lines", "The whole piece may not exceed {max_lines} lines.", AtMost("max_lines", lines)),
    ("lowercase", "Write everything in lowercase letters; no capital letters at all.", LOWERCASE),
    ("lowercase", "Use only lowercase letters throughout.", LOWERCASE),
    ("no_comma", "Do not use any commas.", NO_COMMA),
    ("no_comma", "Your response must not contain a single comma.", NO_COMMA),
    ("end_phrase", 'End with the exact phrase "{end_phrase}".', END_PHRASE),
    ("end_phrase", 'Finish your response with these exact words: "{end_phrase}".', END_PHRASE),
    ("postscript", "At the end, add a postscript starting with P.S.", POSTSCRIPT),
    ("postscript", 'Close with a short postscript that begins with "P.S.".', POSTSCRIPT),
    # 字数（不含空白）: characters, whitespace not counted, between min and max inclusive
    ("char_range", "字数（不含空白）控制在{min_chars}到{max_chars}字之间。", CHAR_RANGE),
    ("char_range", "全文{min_chars}至{max_chars}字，不计空格和换行。", CHAR_RANGE),
    ("title_zh", "请在第一行单独写标题，格式为<<标题>>。", TITLE_ZH),
    ("title_zh", "第一行单独写一个标题，用<<>>括起来。", TITLE_ZH),
    ("stanzas_zh", "全文分为{stanzas}段，段与段之间空一行。", Exactly("stanzas", chinese_paragraphs)),
    ("stanzas_zh", "请写{stanzas}段，每段之间用空行隔开。", Exactly("stanzas", chinese_paragraphs)),
]


class _Pick:
    """Stands in for the rng in ``_phrase``: picks the phrasing under test."""

    def __init__(self, phrasing: str):
        self.phrasing = phrasing

    def choice(self, options):
        assert self.phrasing in options
        return self.phrasing


def test_the_table_covers_every_phrasing():
    table = [(kind, phrasing) for kind, phrasing, _ in PHRASINGS]
    assert len(set(table)) == len(table)
    assert set(table) == {(t.kind, p) for t in CATALOG for p in t.phrasings}


def every_sample(kind: str) -> list[dict[str, Any]]:
    """The template's parameters over enough draws to meet each of its choices."""
    samples = []
    for seed in range(40):
        params = TEMPLATES[kind].sample(random.Random(seed))
        if params not in samples:
            samples.append(params)
    return samples


@pytest.mark.parametrize(
    "kind, phrasing, meaning", PHRASINGS, ids=[f"{kind}-{i % 2}" for i, (kind, _, _) in enumerate(PHRASINGS)]
)
def test_the_phrasing_means_what_its_spec_checks(kind, phrasing, meaning):
    template = TEMPLATES[kind]
    for params in every_sample(kind):
        sentence = _phrase(template, params, _Pick(phrasing))
        for name in meaning.stated():  # the bound the sentence states is the one probed
            assert str(params[name]) in sentence, (sentence, name)
        spec = template.spec(params)
        for response, obeys in meaning.probes(params):
            verdict = check_instructions(response, [spec.instruction_id], [spec.kwargs])
            assert verdict == [obeys], (sentence, spec.kwargs, response[:80], f"obeys: {obeys}")
