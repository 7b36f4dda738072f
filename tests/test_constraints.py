"""Deterministic constraint checks (rewards.constraints) and the constraint spec (rewards.spec)."""

import pytest

from rewards.constraints import check_instructions, known_instruction_ids, validate_kwargs
from rewards.spec import ConstraintSpec, JudgeConstraint, RuleConstraint

POEM = "<<Harbour Lights>>\n\nThe lantern sways.\nThe tide comes in.\n\nThe gulls are quiet now."

# (instruction id, kwargs, a response that follows it, a response that does not)
IFEVAL_CASES = [
    (
        "length_constraints:number_words",
        {"num_words": 5, "relation": "less than"},
        "Short and sweet.",
        "This one has far too many words in it.",
    ),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 2, "relation": "at least"},
        "One. Two. Three.",
        "Only one.",
    ),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n***\nSecond.", "Only one paragraph."),
    ("keywords:existence", {"keywords": ["lantern", "tide"]}, POEM, "No such words here."),
    ("keywords:forbidden_words", {"forbidden_words": ["moon"]}, POEM, "The moon rose."),
    ("keywords:frequency", {"keyword": "the", "frequency": 3, "relation": "at least"}, POEM, "A lantern."),
    (
        "keywords:letter_frequency",
        {"letter": "z", "let_frequency": 2, "let_relation": "at least"},
        "Zigzag buzz.",
        "Nothing here.",
    ),
    ("detectable_format:title", {}, POEM, "No title at all."),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two", "* only one"),
    ("detectable_format:json_format", {}, '{"poem": "sea"}', "not json"),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1}, "A *bright* sea.", "A plain sea."),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "Section", "num_sections": 2},
        "Section 1\na\nSection 2\nb",
        "Section 1\na",
    ),
    ("detectable_format:constrained_response", {}, "My answer is yes.", "Perhaps."),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hello.\nP.S. Bye.", "Hello."),
    ("detectable_content:number_placeholders", {"num_placeholders": 1}, "Dear [name],", "Dear friend,"),
    ("change_case:english_lowercase", {}, "all lower case here", "Not all lower"),
    ("change_case:english_capital", {}, "ALL CAPITALS HERE", "Not capitals"),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": "less than"},
        "One WORD only",
        "TWO WORDS CAPS",
    ),
    ("punctuation:no_comma", {}, "No commas here.", "Yes, one."),
    ("startend:end_checker", {"end_phrase": "The end."}, "A story. The end.", "A story."),
    ("startend:quotation", {}, '"Quoted."', "Not quoted."),
    ("combination:two_responses", {}, "First answer.\n******\nSecond answer.", "Just one."),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "Write a poem. Here it is.", "Here it is."),
    (
        "language:response_language",
        {"language": "en"},
        "This is clearly an English sentence about the sea.",
        "Ceci est une phrase en français sur la mer.",
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
        "First para.\n\nThen the second.",
        "First para.\n\nAnd the second.",
    ),
]


def test_all_25_ifeval_types_are_known():
    assert len({case[0] for case in IFEVAL_CASES}) == 25
    assert {case[0] for case in IFEVAL_CASES} <= known_instruction_ids()


@pytest.mark.parametrize("instruction_id, kwargs, follows, breaks", IFEVAL_CASES, ids=[c[0] for c in IFEVAL_CASES])
def test_ifeval_checks_with_strict_semantics(instruction_id, kwargs, follows, breaks):
    assert check_instructions(follows, [instruction_id], [kwargs]) == [True]
    assert check_instructions(breaks, [instruction_id], [kwargs]) == [False]


RLMR_CASES = [
    ("rlmr:word_range", {"min_words": 3, "max_words": 6}, "Three small words here.", "Two words"),
    ("rlmr:word_range", {"max_words": 20}, POEM, "word " * 21),
    ("rlmr:char_range", {"min_chars": 10, "max_chars": 20}, "春眠不觉晓，处处闻啼鸟。", "春眠不觉晓。"),
    ("rlmr:char_range", {"max_chars": 5, "count_whitespace": True}, "a b c", "a b c d"),
    ("rlmr:forbidden_words", {"forbidden_words": ["moon", "星星"]}, "The moonlit sea.", "I saw the Moon and 星星."),
    ("rlmr:title", {}, POEM, "Harbour Lights\nThe lantern sways."),
    ("rlmr:title", {"title": "harbour lights"}, POEM, "<<Other Title>>\nText."),
    ("rlmr:title", {}, "# Harbour Lights\nText.", "Text first\n# Late heading"),
    ("rlmr:line_count", {"min_lines": 4, "max_lines": 6}, POEM, "One line."),
    ("rlmr:stanza_count", {"min_stanzas": 3, "max_stanzas": 3}, POEM, "One stanza\nonly."),
]


@pytest.mark.parametrize("instruction_id, kwargs, follows, breaks", RLMR_CASES)
def test_creative_writing_checks(instruction_id, kwargs, follows, breaks):
    assert check_instructions(follows, [instruction_id], [kwargs]) == [True]
    assert check_instructions(breaks, [instruction_id], [kwargs]) == [False]


def test_results_come_back_in_order_and_empty_responses_fail():
    ids = ["rlmr:word_range", "punctuation:no_comma", "detectable_format:title"]
    kwargs = [{"max_words": 3}, {}, {}]
    assert check_instructions(POEM, ids, kwargs) == [False, True, True]
    assert check_instructions(
        "   ", ["punctuation:no_comma", "rlmr:forbidden_words"], [{}, {"forbidden_words": ["x"]}]
    ) == [False, False]


@pytest.mark.parametrize(
    "instruction_id, kwargs, message",
    [
        ("no:such_id", {}, "unknown instruction id"),
        (
            "length_constraints:number_words",
            {"num_words": 5},
            "expected exactly",
        ),  # IFEval would fill relation at random
        ("length_constraints:number_words", {"num_words": 5, "relation": "about"}, "bad kwargs"),
        ("rlmr:word_range", {}, "min_words or max_words"),
        ("rlmr:word_range", {"min_words": 9, "max_words": 3}, "min_words=9 > max_words=3"),
        ("rlmr:word_range", {"max_words": "80"}, "non-negative integer"),
        ("rlmr:title", {"titel": "x"}, "unexpected kwargs"),
        ("rlmr:forbidden_words", {"forbidden_words": [""]}, "non-empty strings"),
        # IFEval's own description builder takes these silently; KWARG_TYPES refuses them
        ("keywords:existence", {"keywords": "rain"}, "'keywords' must be a list of strings, got 'rain'"),
        (
            "length_constraints:number_words",
            {"num_words": "5", "relation": "less than"},
            "'num_words' must be an integer",
        ),
        ("length_constraints:number_words", {"num_words": True, "relation": "less than"}, "must be an integer"),
        ("keywords:frequency", {"keyword": " ", "frequency": 2, "relation": "at least"}, "must be a string"),
    ],
)
def test_bad_kwargs_are_refused_with_a_reason(instruction_id, kwargs, message):
    with pytest.raises(ValueError, match=message):
        validate_kwargs(instruction_id, kwargs)
    with pytest.raises(ValueError, match=message):
        check_instructions("text", [instruction_id], [kwargs])


def test_spec_round_trips_through_ground_truth_json():
    spec = ConstraintSpec(
        constraints=[
            RuleConstraint(instruction_id="rlmr:word_range", kwargs={"max_words": 80}),
            JudgeConstraint(text="Written in the second person."),
        ]
    )
    again = ConstraintSpec.parse(spec.to_ground_truth())
    assert again == spec
    assert [r.instruction_id for r in again.rules] == ["rlmr:word_range"]
    assert [j.text for j in again.judged] == ["Written in the second person."]
    assert ConstraintSpec.parse(spec.model_dump()["constraints"]) == spec


def test_spec_from_ifeval_row_drops_null_kwargs():
    spec = ConstraintSpec.from_ifeval(
        ["punctuation:no_comma", "length_constraints:number_words"],
        [{"num_words": None}, {"num_words": 300, "relation": "at least", "keyword": None}],
    )
    assert spec.rules[1].kwargs == {"num_words": 300, "relation": "at least"}


@pytest.mark.parametrize(
    "value, message",
    [
        ("{not json", "not valid JSON"),
        ([{"type": "rule", "instruction_id": "nope"}], "unknown instruction id"),
        ([{"type": "rule", "instruction_id": "rlmr:word_range", "kwargs": {}}], "min_words or max_words"),
        ([{"type": "judge", "text": ""}], "at least 1 character"),
        ([{"type": "vibes"}], "type"),
    ],
)
def test_bad_specs_are_refused(value, message):
    with pytest.raises(ValueError, match=message):
        ConstraintSpec.parse(value)


def test_every_kwarg_of_every_known_instruction_has_a_declared_type():
    from rewards.constraints import KWARG_TYPES, instruction_kwarg_names, known_instruction_ids

    names = {n for iid in known_instruction_ids() for n in instruction_kwarg_names(iid)}
    assert names - set(KWARG_TYPES) == set()
