"""Deterministic constraint checks: IFEval's 25 instruction types plus creative-writing ones.

IFEval ids (``length_constraints:number_words``, ``keywords:existence``, ...) are checked by
lm-eval's own implementation (``lm_eval.tasks.ifeval``) with IFEval's strict semantics: the same
function lm-eval scores IFEval with. Its NLTK data comes from ``rewards.nltk_data`` (offline), and
langdetect is seeded so language checks give the same answer every time.

Ours, for what creative prompts ask and IFEval lacks (kwargs in brackets, bounds inclusive):

- ``rlmr:word_range`` [min_words, max_words]: words as IFEval counts them (``\\w+`` runs).
- ``rlmr:char_range`` [min_chars, max_chars, count_whitespace=False]: characters, which is how
  length is measured for Chinese/Japanese text, where words are not space-separated.
- ``rlmr:forbidden_words`` [forbidden_words]: none may appear, case-insensitive; whole words for
  alphabetic words, substrings for words with CJK characters.
- ``rlmr:title`` [title=None]: the first non-empty line is a title, ``<<...>>`` or a Markdown
  ``#`` heading; if ``title`` is given, it must be that title (case-insensitive).
- ``rlmr:line_count`` [min_lines, max_lines]: non-empty lines.
- ``rlmr:stanza_count`` [min_stanzas, max_stanzas]: blocks of non-empty lines separated by blank lines.

At least one bound of a range must be given. Public API: ``check_instructions`` (and ``_loose``),
``known_instruction_ids``, ``instruction_kwarg_names``, ``validate_kwargs``, ``check_kwarg_types``,
``KWARG_TYPES``, ``ifeval_registry``, ``loose_variants``.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from rewards.nltk_data import ensure_punkt_tab

_WORD = re.compile(r"\w+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


@functools.lru_cache(maxsize=1)
def _ifeval():
    """lm-eval's IFEval modules, imported once, after the offline NLTK data is in place."""
    ensure_punkt_tab()
    from langdetect import DetectorFactory
    from lm_eval.tasks.ifeval import instructions_registry, utils

    # langdetect samples at random unless seeded: without this the same response could pass
    # IFEval's language and lowercase checks on one call and fail on the next.
    DetectorFactory.seed = 0

    return instructions_registry.INSTRUCTION_DICT, utils.test_instruction_following_strict


def _in_range(value: int, low: int | None, high: int | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def _non_empty_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _word_range(response: str, min_words: int | None = None, max_words: int | None = None) -> bool:
    return _in_range(len(_WORD.findall(response)), min_words, max_words)


def _char_range(
    response: str, min_chars: int | None = None, max_chars: int | None = None, count_whitespace: bool = False
) -> bool:
    text = response.strip() if count_whitespace else re.sub(r"\s", "", response)
    return _in_range(len(text), min_chars, max_chars)


def _forbidden_words(response: str, forbidden_words: list[str]) -> bool:
    lowered = response.lower()
    for word in forbidden_words:
        word = word.lower().strip()
        if _CJK.search(word):
            if word in lowered:
                return False
        elif re.search(r"(?<!\w)" + re.escape(word) + r"(?!\w)", lowered):
            return False
    return True


def _title(response: str, title: str | None = None) -> bool:
    lines = _non_empty_lines(response)
    if not lines:
        return False
    first = lines[0].strip()
    match = re.fullmatch(r"<<(.+)>>", first) or re.fullmatch(r"#{1,6}\s+(.+?)\s*#*", first)
    if match is None:
        return False
    return title is None or match.group(1).strip().lower() == title.strip().lower()


def _line_count(response: str, min_lines: int | None = None, max_lines: int | None = None) -> bool:
    return _in_range(len(_non_empty_lines(response)), min_lines, max_lines)


def _stanza_count(response: str, min_stanzas: int | None = None, max_stanzas: int | None = None) -> bool:
    stanzas = [block for block in re.split(r"\n\s*\n", response.strip()) if block.strip()]
    return _in_range(len(stanzas), min_stanzas, max_stanzas)


# id -> (checker, names of its range bounds of which at least one is required, required kwargs)
_RLMR_CHECKS: dict[str, tuple[Callable[..., bool], tuple[str, ...], tuple[str, ...]]] = {
    "rlmr:word_range": (_word_range, ("min_words", "max_words"), ()),
    "rlmr:char_range": (_char_range, ("min_chars", "max_chars"), ()),
    "rlmr:forbidden_words": (_forbidden_words, (), ("forbidden_words",)),
    "rlmr:title": (_title, (), ()),
    "rlmr:line_count": (_line_count, ("min_lines", "max_lines"), ()),
    "rlmr:stanza_count": (_stanza_count, ("min_stanzas", "max_stanzas"), ()),
}


INT, STR, STR_LIST, BOOL = "integer", "string", "list of strings", "boolean"
_ARTICLE = {INT: "an", STR: "a", STR_LIST: "a", BOOL: "a"}

# kwarg name -> type, for every kwarg of the known instruction ids (IFEval's and rlmr:*)
KWARG_TYPES: dict[str, str] = {
    **dict.fromkeys(
        [
            "num_words",
            "num_sentences",
            "num_paragraphs",
            "nth_paragraph",
            "num_placeholders",
            "num_bullets",
            "num_highlights",
            "num_sections",
            "frequency",
            "let_frequency",
            "capital_frequency",
            "min_words",
            "max_words",
            "min_chars",
            "max_chars",
            "min_lines",
            "max_lines",
            "min_stanzas",
            "max_stanzas",
        ],
        INT,
    ),
    **dict.fromkeys(
        [
            "keyword",
            "relation",
            "letter",
            "let_relation",
            "language",
            "first_word",
            "postscript_marker",
            "section_spliter",
            "prompt_to_repeat",
            "end_phrase",
            "capital_relation",
            "title",
        ],
        STR,
    ),
    "keywords": STR_LIST,
    "forbidden_words": STR_LIST,
    "count_whitespace": BOOL,
}


def _type_ok(kind: str, value: Any) -> bool:
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == STR:
        return isinstance(value, str) and bool(value.strip())
    if kind == STR_LIST:
        return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v.strip() for v in value)
    return isinstance(value, bool)


def check_kwarg_types(instruction_id: str, kwargs: dict[str, Any]) -> None:
    """Raise ValueError naming the first kwarg whose value has the wrong type."""
    for name, value in kwargs.items():
        kind = KWARG_TYPES.get(name)
        if kind is None:
            raise ValueError(f"{instruction_id}: no type known for kwarg {name!r}")
        if not _type_ok(kind, value):
            raise ValueError(f"{instruction_id}: kwarg {name!r} must be {_ARTICLE[kind]} {kind}, got {value!r}")


@functools.lru_cache(maxsize=1)
def known_instruction_ids() -> frozenset[str]:
    return frozenset(_ifeval()[0]) | frozenset(_RLMR_CHECKS)


@functools.cache
def _parameters(function: Callable) -> dict[str, inspect.Parameter]:
    return {name: p for name, p in inspect.signature(function).parameters.items() if name not in ("self", "response")}


def ifeval_registry() -> dict[str, Any]:
    """lm-eval's IFEval instruction classes by id (its ``INSTRUCTION_DICT``), imported with the offline NLTK data
    in place; ``registry[iid](iid).build_description(**kwargs)`` is IFEval's own wording of an instruction."""
    return _ifeval()[0]


def instruction_kwarg_names(instruction_id: str) -> list[str]:
    """The kwargs ``instruction_id`` (any id of ``known_instruction_ids``) accepts, in signature order."""
    if instruction_id in _RLMR_CHECKS:
        function = _RLMR_CHECKS[instruction_id][0]
    else:
        function = _ifeval()[0][instruction_id].build_description
    return [name for name in _parameters(function) if name != "prompt"]


def validate_kwargs(instruction_id: str, kwargs: dict[str, Any]) -> None:
    """Raise ValueError unless ``kwargs`` fit ``instruction_id`` (names, required ones, value types).

    Types are checked against ``KWARG_TYPES`` first: IFEval's own description builder accepts some
    wrong types silently (``keywords: "rain"`` is iterated letter by letter)."""
    given = {name: value for name, value in kwargs.items() if value is not None}
    if instruction_id in _RLMR_CHECKS:
        check, bounds, required = _RLMR_CHECKS[instruction_id]
        allowed = _parameters(check)
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise ValueError(f"{instruction_id}: unexpected kwargs {unknown}; allowed: {sorted(allowed)}")
        missing = [name for name in required if kwargs.get(name) in (None, [], "")]
        if missing or (bounds and all(kwargs.get(b) is None for b in bounds)):
            raise ValueError(f"{instruction_id}: needs {missing or ' or '.join(bounds)}")
        for name in bounds:
            if kwargs.get(name) is not None and (
                not isinstance(kwargs[name], int) or isinstance(kwargs[name], bool) or kwargs[name] < 0
            ):
                raise ValueError(f"{instruction_id}: {name} must be a non-negative integer, got {kwargs[name]!r}")
        low, high = (kwargs.get(b) for b in bounds) if bounds else (None, None)
        if low is not None and high is not None and low > high:
            raise ValueError(f"{instruction_id}: {bounds[0]}={low} > {bounds[1]}={high}")
        if "forbidden_words" in required and not all(
            isinstance(w, str) and w.strip() for w in kwargs["forbidden_words"]
        ):
            raise ValueError(f"{instruction_id}: forbidden_words must be a list of non-empty strings")
        check_kwarg_types(instruction_id, given)
        return

    registry, _ = _ifeval()
    if instruction_id not in registry:
        raise ValueError(f"unknown instruction id {instruction_id!r}")
    instruction = registry[instruction_id](instruction_id)
    allowed = _parameters(registry[instruction_id].build_description)
    unknown = sorted(set(kwargs) - set(allowed))
    # IFEval fills a missing kwarg with a random value, which would make the check meaningless.
    missing = sorted(name for name in allowed if kwargs.get(name) in (None, "", []) and name != "prompt")
    if unknown or missing:
        raise ValueError(
            f"{instruction_id}: kwargs {sorted(kwargs)} do not fit; "
            f"expected exactly {sorted(set(allowed) - {'prompt'})}"
        )
    check_kwarg_types(instruction_id, given)
    try:
        instruction.build_description(**kwargs)
    except Exception as err:  # IFEval raises ValueError/TypeError on bad values
        raise ValueError(f"{instruction_id}: bad kwargs {kwargs}: {err}") from err


def check_instructions(
    response: str, instruction_id_list: list[str], kwargs_list: list[dict[str, Any]], prompt: str | None = None
) -> list[bool]:
    """One bool per instruction id, in order: does ``response`` follow it (IFEval strict semantics)?

    ``prompt`` is needed only by instructions that refer to it (``combination:repeat_prompt``).
    Unknown ids and kwargs that do not fit raise ValueError (bad data is not a failed response).
    """
    if len(instruction_id_list) != len(kwargs_list):
        raise ValueError(f"{len(instruction_id_list)} instruction ids but {len(kwargs_list)} kwargs")
    results = []
    for instruction_id, kwargs in zip(instruction_id_list, kwargs_list, strict=True):
        kwargs = {k: v for k, v in (kwargs or {}).items() if v is not None}
        validate_kwargs(instruction_id, kwargs)
        if instruction_id in _RLMR_CHECKS:
            results.append(bool(response.strip()) and _RLMR_CHECKS[instruction_id][0](response, **kwargs))
        else:
            _, strict = _ifeval()
            row = SimpleNamespace(instruction_id_list=[instruction_id], kwargs=[kwargs], prompt=prompt or "")
            results.append(bool(strict(row, response).follow_instruction_list[0]))
    return results


def loose_variants(response: str) -> list[str]:
    """IFEval's loose variants of a response: as is, without its first and/or last line, and each of
    those with every ``*`` removed (markdown emphasis)."""
    lines = response.split("\n")
    trimmed = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return trimmed + [text.replace("*", "") for text in trimmed]


def check_instructions_loose(
    response: str, instruction_id_list: list[str], kwargs_list: list[dict[str, Any]], prompt: str | None = None
) -> list[bool]:
    """IFEval's loose semantics: an instruction is followed when any of ``loose_variants(response)``
    follows it under ``check_instructions``. Same arguments and errors as ``check_instructions``."""
    followed = [False] * len(instruction_id_list)
    for variant in loose_variants(response):
        if not variant.strip():  # IFEval's loose check never counts a blank variant as following anything
            continue
        results = check_instructions(variant, instruction_id_list, kwargs_list, prompt)
        followed = [before or now for before, now in zip(followed, results, strict=True)]
        if all(followed):
            break
    return followed
