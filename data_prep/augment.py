"""`augment`: attach sampled, machine-checkable constraints to plain creative prompts.

Creative prompts rarely carry constraints a verifier can check, so (as the paper expands its
seed data) we append some. Each ``Template`` in ``CATALOG`` samples its parameters, states them
in one of several natural phrasings appended to the prompt, and emits the matching rule
constraint for ``rewards.constraints``. The phrasing and the spec are built from the same
parameters, and ``write_compliant_response`` writes a response that does what the phrasings say,
which the tests run through the checker.

English prompts draw from the English templates; prompts that are mostly CJK draw from the
Chinese ones (character counts instead of word counts). Templates that cannot hold together
(lowercase text and a "P.S." line, say) are never combined.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rewards.spec import RuleConstraint

# Plain English word order, so language detection (IFEval's lowercase check uses it) says "en".
FILLER_EN = (
    "the quiet harbour holds the evening light and the gulls are resting on the old stone wall "
    "while the river runs down to the sea and the boats come home one by one"
).split()
CLICHES_EN = ["suddenly", "tapestry", "delve", "vibrant", "journey", "whisper", "realm", "testament"]
KEYWORDS_EN = ["lighthouse", "compass", "violin", "ladder", "teacup", "kite", "harvest", "mirror", "anchor", "feather"]
END_PHRASES_EN = ["and the tide went out", "nothing else remained", "that was enough", "the door stayed open"]
FILLER_ZH = "春风细雨山河明月小舟灯火归途远方清晨黄昏梧桐落叶星光"


def is_cjk_prompt(text: str) -> bool:
    cjk = len(re.findall(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]", text))
    return cjk > 0.3 * max(1, len(re.sub(r"\s", "", text)))


@dataclass
class Draft:
    """What the sampled constraints ask of a response; ``write_compliant_response`` honours it."""

    lang: str = "en"
    title: str | None = None
    keywords: list[str] = field(default_factory=list)
    forbidden: list[str] = field(default_factory=list)
    min_words: int | None = None
    max_words: int | None = None
    min_chars: int | None = None
    max_chars: int | None = None
    stanzas: int | None = None
    max_lines: int | None = None
    lowercase: bool = False
    no_comma: bool = False
    end_phrase: str | None = None
    postscript: bool = False


@dataclass(frozen=True)
class Template:
    kind: str
    lang: str
    sample: Callable[[random.Random], dict[str, Any]]
    phrasings: tuple[str, ...]
    spec: Callable[[dict[str, Any]], RuleConstraint]
    ask: Callable[[Draft, dict[str, Any]], None]  # record in the draft what the phrasing asks
    conflicts: frozenset[str] = frozenset()


def _rule(instruction_id: str, **kwargs: Any) -> RuleConstraint:
    return RuleConstraint(instruction_id=instruction_id, kwargs=kwargs)


def _word_range(rng: random.Random) -> dict[str, Any]:
    low = rng.choice([40, 60, 80, 100, 150])
    return {"min_words": low, "max_words": low + rng.choice([20, 40, 60, 100])}


CATALOG: tuple[Template, ...] = (
    Template(
        "word_range",
        "en",
        _word_range,
        (
            "Write between {min_words} and {max_words} words.",
            "Your piece must be {min_words} to {max_words} words long.",
        ),
        lambda p: _rule("rlmr:word_range", **p),
        lambda d, p: setattr(d, "min_words", p["min_words"]) or setattr(d, "max_words", p["max_words"]),
    ),
    Template(
        "max_words",
        "en",
        lambda rng: {"max_words": rng.choice([60, 80, 120, 200])},
        ("Use no more than {max_words} words.", "Keep it to {max_words} words or fewer."),
        lambda p: _rule("rlmr:word_range", **p),
        lambda d, p: setattr(d, "max_words", p["max_words"]),
        frozenset({"word_range"}),
    ),
    Template(
        "title",
        "en",
        lambda rng: {},
        (
            "Give it a title wrapped in double angular brackets, such as <<title>>, alone on the first line.",
            "Start with a title on its own line, in the form <<your title>>.",
        ),
        lambda p: _rule("rlmr:title"),
        lambda d, p: setattr(d, "title", "harbour lights"),
    ),
    Template(
        "keywords",
        "en",
        lambda rng: {"keywords": rng.sample(KEYWORDS_EN, 2)},
        ('Include the words "{k0}" and "{k1}".', 'Make sure the words "{k0}" and "{k1}" both appear.'),
        lambda p: _rule("keywords:existence", keywords=p["keywords"]),
        lambda d, p: d.keywords.extend(p["keywords"]),
    ),
    Template(
        "forbidden_words",
        "en",
        lambda rng: {"forbidden_words": rng.sample(CLICHES_EN, 2)},
        ('Do not use the words "{f0}" or "{f1}".', 'Avoid the words "{f0}" and "{f1}" entirely.'),
        lambda p: _rule("rlmr:forbidden_words", forbidden_words=p["forbidden_words"]),
        lambda d, p: d.forbidden.extend(p["forbidden_words"]),
    ),
    Template(
        "stanzas",
        "en",
        lambda rng: {"stanzas": rng.choice([2, 3, 4])},
        (
            "Write exactly {stanzas} stanzas separated by blank lines.",
            "Arrange it in {stanzas} stanzas, with a blank line between stanzas.",
        ),
        lambda p: _rule("rlmr:stanza_count", min_stanzas=p["stanzas"], max_stanzas=p["stanzas"]),
        lambda d, p: setattr(d, "stanzas", p["stanzas"]),
        frozenset({"title", "postscript"}),  # a title or P.S. block would count as a stanza
    ),
    Template(
        "max_lines",
        "en",
        lambda rng: {"max_lines": rng.choice([12, 16, 20])},
        ("Use at most {max_lines} lines.", "The whole piece may not exceed {max_lines} lines."),
        lambda p: _rule("rlmr:line_count", max_lines=p["max_lines"]),
        lambda d, p: setattr(d, "max_lines", p["max_lines"]),
    ),
    Template(
        "lowercase",
        "en",
        lambda rng: {},
        ("Write everything in lowercase letters; no capital letters at all.", "Use only lowercase letters throughout."),
        lambda p: _rule("change_case:english_lowercase"),
        lambda d, p: setattr(d, "lowercase", True),
        frozenset({"postscript"}),
    ),
    Template(
        "no_comma",
        "en",
        lambda rng: {},
        ("Do not use any commas.", "Your response must not contain a single comma."),
        lambda p: _rule("punctuation:no_comma"),
        lambda d, p: setattr(d, "no_comma", True),
    ),
    Template(
        "end_phrase",
        "en",
        lambda rng: {"end_phrase": rng.choice(END_PHRASES_EN)},
        ('End with the exact phrase "{end_phrase}".', 'Finish your response with these exact words: "{end_phrase}".'),
        lambda p: _rule("startend:end_checker", end_phrase=p["end_phrase"]),
        lambda d, p: setattr(d, "end_phrase", p["end_phrase"]),
        frozenset({"postscript"}),
    ),
    Template(
        "postscript",
        "en",
        lambda rng: {},
        ("At the end, add a postscript starting with P.S.", 'Close with a short postscript that begins with "P.S.".'),
        lambda p: _rule("detectable_content:postscript", postscript_marker="P.S."),
        lambda d, p: setattr(d, "postscript", True),
    ),
    Template(
        "char_range",
        "zh",
        lambda rng: (lambda low: {"min_chars": low, "max_chars": low + rng.choice([50, 100, 200])})(
            rng.choice([100, 200, 300])
        ),
        ("字数（不含空白）控制在{min_chars}到{max_chars}字之间。", "全文{min_chars}至{max_chars}字，不计空格和换行。"),
        lambda p: _rule("rlmr:char_range", **p),
        lambda d, p: setattr(d, "min_chars", p["min_chars"]) or setattr(d, "max_chars", p["max_chars"]),
    ),
    Template(
        "title_zh",
        "zh",
        lambda rng: {},
        ("请在第一行单独写标题，格式为<<标题>>。", "第一行单独写一个标题，用<<>>括起来。"),
        lambda p: _rule("rlmr:title"),
        lambda d, p: setattr(d, "title", "归途"),
    ),
    Template(
        "stanzas_zh",
        "zh",
        lambda rng: {"stanzas": rng.choice([2, 3, 4])},
        ("全文分为{stanzas}段，段与段之间空一行。", "请写{stanzas}段，每段之间用空行隔开。"),
        lambda p: _rule("rlmr:stanza_count", min_stanzas=p["stanzas"], max_stanzas=p["stanzas"]),
        lambda d, p: setattr(d, "stanzas", p["stanzas"]),
        frozenset({"title_zh"}),
    ),
)
TEMPLATES = {t.kind: t for t in CATALOG}


def _phrase(template: Template, params: dict[str, Any], rng: random.Random) -> str:
    values = dict(params)
    for name, prefix in (("keywords", "k"), ("forbidden_words", "f")):
        for i, word in enumerate(params.get(name, [])):
            values[f"{prefix}{i}"] = word
    return rng.choice(template.phrasings).format(**values)


@dataclass
class Augmented:
    prompt: str
    constraints: list[RuleConstraint]
    kinds: list[str]
    draft: Draft


def augment_prompt(prompt: str, rng: random.Random, per_prompt: int, kinds: list[str] | None = None) -> Augmented:
    """Append ``per_prompt`` compatible constraints (fewer if the allowed kinds run out)."""
    lang = "zh" if is_cjk_prompt(prompt) else "en"
    pool = [t for t in CATALOG if t.lang == lang and (kinds is None or t.kind in kinds)]
    rng.shuffle(pool)
    chosen: list[Template] = []
    for template in pool:
        if len(chosen) == per_prompt:
            break
        if any(template.kind in c.conflicts or c.kind in template.conflicts for c in chosen):
            continue
        chosen.append(template)
    draft = Draft(lang=lang)
    sentences, constraints = [], []
    for template in chosen:
        params = template.sample(rng)
        sentences.append(_phrase(template, params, rng))
        constraints.append(template.spec(params))
        template.ask(draft, params)
    joiner = "" if lang == "zh" else " "
    text = prompt.rstrip() + ("\n\n" + joiner.join(sentences) if sentences else "")
    return Augmented(text, constraints, [t.kind for t in chosen], draft)


def row_rng(seed: int, index: int, prompt: str) -> random.Random:
    """Per-row randomness that depends on the seed and the row only (reruns are identical)."""
    digest = hashlib.blake2b(f"{seed}\x00{index}\x00{prompt}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def write_compliant_response(draft: Draft) -> str:
    """A response that does what the draft's constraints ask (for tests and examples)."""
    if draft.lang == "zh":
        return _compliant_zh(draft)
    words = [w for w in FILLER_EN if w not in draft.forbidden]
    title = f"<<{draft.title}>>" if draft.title else None
    ending = [draft.end_phrase] if draft.end_phrase else []  # one item: it must stay on one line
    postscript = "P.S. thank you for reading" if draft.postscript else ""
    fixed_words = sum(len(re.findall(r"\w+", part)) for part in [title or "", *draft.keywords, *ending, postscript])
    low = draft.min_words if draft.min_words is not None else 30
    high = draft.max_words if draft.max_words is not None else max(low, 60)
    target = max(fixed_words, (low + high) // 2)
    body_words = draft.keywords + [words[i % len(words)] for i in range(target - fixed_words)] + ending
    stanzas = draft.stanzas or 1
    max_body_lines = (draft.max_lines or 10**6) - (1 if title else 0) - (1 if draft.postscript else 0)
    lines_per_stanza = max(1, min(4, max_body_lines // stanzas))
    chunks = _split(body_words, stanzas * lines_per_stanza)
    blocks = [
        "\n".join(" ".join(line) for line in chunks[s * lines_per_stanza : (s + 1) * lines_per_stanza] if line)
        for s in range(stanzas)
    ]
    text = "\n\n".join(block for block in blocks if block)
    if title:
        text = f"{title}\n{text}"
    if postscript:
        text += "\n" + postscript
    text = text.replace(",", "")
    return text.lower() if draft.lowercase else text


def _split(items: list[str], parts: int) -> list[list[str]]:
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


def _compliant_zh(draft: Draft) -> str:
    low = draft.min_chars or 60
    high = draft.max_chars or max(low, 120)
    title = f"<<{draft.title}>>" if draft.title else None
    fixed = len(re.sub(r"\s", "", title)) if title else 0
    body = [FILLER_ZH[i % len(FILLER_ZH)] for i in range(max(0, (low + high) // 2 - fixed))]
    stanzas = draft.stanzas or 1
    blocks = ["".join(chunk) + "。" for chunk in _split(body[: max(0, len(body) - stanzas)], stanzas)]
    text = "\n\n".join(blocks)
    return f"{title}\n{text}" if title else text
