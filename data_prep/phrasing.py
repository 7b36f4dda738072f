"""A constraint must be stated in the prompt it belongs to: describe, detect, append.

The policy is penalised for breaking a constraint, so the prompt has to ask for it. A generated
prompt usually states its constraints in its own words; ``ensure_stated`` checks that each one is
there and appends a plain sentence for each one that is not, the way ``augment`` appends its
phrasings (a blank line after the prompt, sentences joined by spaces).

"Stated" is decided by evidence, a heuristic that errs towards appending (a repeated instruction
costs nothing; a missing one makes the reward unfair):

- every value of the constraint's kwargs appears in the prompt: numbers as digits or, up to
  twenty, as English words (Chinese numerals up to ten in CJK prompts), strings and list items
  case-insensitively (relations excepted: they are worded too freely; a language code must
  appear as the language's name);
- and, for constraints with a cue (``CUES``), the cue matches too: "word" near a word count,
  a negation near forbidden words (a prompt *about* the sea does not forbid "sea");
- constraints with neither kwargs nor a cue are never taken as stated.

Judge constraints count as stated when most of their content words (four letters or more, or
CJK characters) appear in the prompt.

Kwarg value types are declared in ``rewards.constraints`` (``KWARG_TYPES``), which every spec
is validated against.
"""

from __future__ import annotations

import re
from typing import Any

from rewards.spec import JudgeConstraint, RuleConstraint

RELATIONS = ("less than", "at least")  # IFEval's comparison words
_NOT_EVIDENCE = {
    "relation",
    "let_relation",
    "capital_relation",
    "language",
    "count_whitespace",
    "section_spliter",
    "prompt_to_repeat",  # the request itself, usually: IFEval's wording does not quote it
}


_NEGATION = (
    r"\b(?:not|never|avoid|without|no|don't|do not|forbidden|ban|banned|exclude)\b|不要|禁止|避免|不得|不能|不可"
)
# instruction id -> a regex the prompt must match (case-insensitive) besides the kwargs evidence
CUES: dict[str, str] = {
    "rlmr:word_range": r"word|字",
    "length_constraints:number_words": r"word|字",
    "rlmr:char_range": r"char|letter|字",
    "rlmr:line_count": r"line|行",
    "rlmr:stanza_count": r"stanza|verse|段|节",
    "length_constraints:number_sentences": r"sentence|句",
    "length_constraints:number_paragraphs": r"paragraph|段",
    "length_constraints:nth_paragraph_first_word": r"paragraph|段",
    "keywords:frequency": r"time|occur|appear|次",
    "keywords:letter_frequency": r"letter|time|次",
    "keywords:forbidden_words": _NEGATION,
    "rlmr:forbidden_words": _NEGATION,
    "detectable_content:number_placeholders": r"placeholder|\[",
    "detectable_format:number_bullet_lists": r"bullet|point|列表|要点",
    "detectable_format:number_highlighted_sections": r"highlight|\*",
    "detectable_format:multiple_sections": r"section|部分",
    "change_case:capital_word_frequency": r"capital|upper|大写",
    "rlmr:title": r"title|标题|题目",
    "detectable_format:title": r"title|标题|题目",
    "change_case:english_lowercase": r"lower[- ]?case|小写",
    "change_case:english_capital": r"capital|upper[- ]?case|大写",
    "punctuation:no_comma": r"comma|逗号",
    "detectable_format:json_format": r"json",
    "startend:quotation": r"quot|引号",
    "combination:two_responses": r"two (?:different )?(?:responses|versions|answers)|\*{6}",
    "detectable_format:constrained_response": r"my answer is",
    "combination:repeat_prompt": r"repeat",
}
_NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
).split()
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_CJK_NUMERALS = "零一二三四五六七八九十"


def _has_number(prompt: str, lowered: str, value: int) -> bool:
    if re.search(rf"(?<![\d.,]){value}(?![\d])", prompt) or re.search(rf"(?<!\d){value:,}(?!\d)", prompt):
        return True
    if value < len(_NUMBER_WORDS) and re.search(rf"\b{_NUMBER_WORDS[value]}\b", lowered):
        return True
    return (
        value <= 10 and bool(_CJK.search(prompt)) and (_CJK_NUMERALS[value] in prompt or "两" in prompt and value == 2)
    )


def _language_name(code: str) -> str:
    """IFEval's name for a language code ("fr" -> "French"), the word a prompt would use."""
    from rewards.constraints import ifeval_registry

    ifeval_registry()  # imports lm-eval's IFEval modules with the offline NLTK data in place
    from lm_eval.tasks.ifeval.instructions import _LANGUAGES

    return _LANGUAGES.get(code, code)


def _evidence(prompt: str, lowered: str, kwargs: dict[str, Any]) -> tuple[bool, bool]:
    """(any evidence looked for, all of it found)."""
    looked = found = False
    ok = True
    for name, value in kwargs.items():
        if name == "language" and isinstance(value, str):
            looked = True
            ok = ok and _language_name(value).casefold() in lowered
            continue
        if name in _NOT_EVIDENCE:
            continue
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, bool):
                continue
            looked = True
            if isinstance(item, int):
                found = _has_number(prompt, lowered, item)
            else:
                found = str(item).casefold().strip() in lowered
            ok = ok and found
    return looked, ok


def is_stated(prompt: str, constraint: RuleConstraint | JudgeConstraint) -> bool:
    lowered = prompt.casefold()
    if isinstance(constraint, JudgeConstraint):
        words = re.findall(r"[^\W\d_]{4,}", constraint.text.casefold()) + _CJK.findall(constraint.text)
        return bool(words) and sum(w in lowered for w in words) >= 0.6 * len(words)
    looked, ok = _evidence(prompt, lowered, constraint.kwargs)
    cue = CUES.get(constraint.instruction_id)
    if cue is not None and not re.search(cue, lowered):
        return False
    return ok if looked else cue is not None


def _bounds(low: int | None, high: int | None, unit: str, zh: bool) -> str:
    if zh:
        if low is not None and high is not None:
            return f"{low}到{high}{unit}"
        return f"不少于{low}{unit}" if low is not None else f"不超过{high}{unit}"
    if low is not None and high is not None:
        return f"between {low} and {high} {unit}"
    return f"at least {low} {unit}" if low is not None else f"at most {high} {unit}"


def describe(constraint: RuleConstraint | JudgeConstraint, zh: bool = False) -> str:
    """One sentence asking for ``constraint`` (English, or Chinese for the rlmr:* checks)."""
    if isinstance(constraint, JudgeConstraint):
        text = constraint.text.strip()
        return text if text[-1:] in ".!?。！？" else text + "."
    iid, kw = constraint.instruction_id, constraint.kwargs
    if iid == "rlmr:word_range":
        return f"Write {_bounds(kw.get('min_words'), kw.get('max_words'), 'words', False)}."
    if iid == "rlmr:char_range":
        space = "" if not kw.get("count_whitespace") else ("（含空白）" if zh else " (whitespace included)")
        if zh:
            return f"全文字数{_bounds(kw.get('min_chars'), kw.get('max_chars'), '字', True)}{space or '（不计空白）'}。"
        unit = "characters" + (space or " (whitespace not counted)")
        return f"Use {_bounds(kw.get('min_chars'), kw.get('max_chars'), unit, False)}."
    if iid in ("rlmr:forbidden_words",):
        words = "、".join(kw["forbidden_words"]) if zh else ", ".join(f'"{w}"' for w in kw["forbidden_words"])
        return f"不要使用这些词：{words}。" if zh else f"Do not use these words: {words}."
    if iid == "rlmr:title":
        if zh:
            return f"第一行写标题<<{kw['title']}>>。" if kw.get("title") else "第一行单独写一个标题，用<<>>括起来。"
        if kw.get("title"):
            return f"Begin with the title <<{kw['title']}>> on its own first line."
        return "Begin with a title on its own first line, wrapped in double angular brackets, like <<title>>."
    if iid == "rlmr:line_count":
        if zh:
            return f"全文{_bounds(kw.get('min_lines'), kw.get('max_lines'), '行', True)}（不计空行）。"
        return f"Use {_bounds(kw.get('min_lines'), kw.get('max_lines'), 'non-empty lines', False)}."
    if iid == "rlmr:stanza_count":
        low, high = kw.get("min_stanzas"), kw.get("max_stanzas")
        if zh:
            count = f"{low}段" if low == high else _bounds(low, high, "段", True)
            return f"全文分为{count}，段与段之间空一行。"
        count = f"exactly {low}" if low == high else _bounds(low, high, "", False).strip()
        return f"Write {count} stanzas, separated by blank lines."
    from rewards.constraints import ifeval_registry  # IFEval's own wording, built from the same kwargs

    registry = ifeval_registry()
    return registry[iid](iid).build_description(**kw).strip()


def ensure_stated(prompt: str, constraints: list[RuleConstraint | JudgeConstraint]) -> tuple[str, list[int]]:
    """The prompt with a sentence appended for each constraint it does not state; their indices."""
    zh = bool(_CJK.search(prompt)) and len(_CJK.findall(prompt)) > 0.3 * max(1, len(re.sub(r"\s", "", prompt)))
    missing = [i for i, c in enumerate(constraints) if not is_stated(prompt, c)]
    if not missing:
        return prompt, []
    joiner = "" if zh else " "
    return prompt.rstrip() + "\n\n" + joiner.join(describe(constraints[i], zh) for i in missing), missing
