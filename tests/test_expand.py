"""`data_prep expand` against a scripted OpenAI-compatible server over real loopback HTTP: exact
accounting of a controlled mix of answers, the target reached, output that `convert` takes
unchanged, resume after the process is killed, server failures, and the parts (near-duplicate
index, constraint phrasing, answer parsing) on their own."""

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from data_prep.cli import main
from data_prep.dedup import NearDuplicateIndex
from data_prep.expand import CandidateRejected, ExpandOptions, ServerFailure, expand, parse_answer
from data_prep.phrasing import describe, ensure_stated, is_stated
from recipe.rlmr.dev.servers.chat import Reply, ScriptedChatServer
from rewards.constraints import known_instruction_ids
from rewards.readers import InputError
from rewards.spec import ConstraintSpec, JudgeConstraint, RuleConstraint

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [
    {
        "prompt": "Write a poem about rain falling on the tin roof of a small mountain cabin at night. "
        "Use at most 80 words.",
        "constraints": [{"type": "rule", "instruction_id": "rlmr:word_range", "kwargs": {"max_words": 80}}],
    },
    {
        "prompt": "Write a letter from a lighthouse keeper to her sister, in the second person.",
        "constraints": [{"type": "judge", "text": "The letter is written in the second person."}],
    },
    {
        "prompt": "Write 300+ words about a river.",
        "instruction_id_list": ["length_constraints:number_words", "punctuation:no_comma"],
        "kwargs": [{"relation": "at least", "num_words": 300}, {}],
    },
]
WORDS_80 = [{"type": "rule", "instruction_id": "rlmr:word_range", "kwargs": {"max_words": 80}}]
NOWHERE = SimpleNamespace(base_url="http://127.0.0.1:9/v1")  # for runs that must fail before any request
NO_COMMA = [{"type": "rule", "instruction_id": "punctuation:no_comma", "kwargs": {}}]


TOPICS = [
    "a fox who counts the stars above a frozen lake",
    "the last tram of the night and its sleepy driver",
    "a grandmother teaching chess to a stubborn robot",
    "two rival bakers sharing one oven during a blackout",
]


def valid(n, **kw):
    """A kept answer; answers for different n share no word pairs beyond the opening."""
    return Reply.task(f"Compose a fable about {TOPICS[n - 1]}. Do not use any commas.", NO_COMMA, **kw)


# Each scripted answer, with the reason it must be rejected for (None: kept). 5xx, slow (times out)
# and non-chat answers are retried and never become candidates.
MIX = [
    (valid(1), None),
    (valid(2, fence=True), None),
    (Reply.text("Sure! Here is a task about whales."), "malformed"),
    (Reply.text("[1, 2]"), "malformed"),
    (Reply.task(["not", "a string"], WORDS_80), "malformed"),
    (Reply.task("   ", WORDS_80), "empty_prompt"),
    (Reply.task("Write an ode to a kettle in under 80 words.", []), "no_constraints"),
    (
        Reply.task("Write an ode to a kettle.", [{"type": "rule", "instruction_id": "rlmr:no_such"}]),
        "unknown_instruction_id",
    ),
    (
        Reply.task("Write an ode to a teapot.", [{"type": "rule", "instruction_id": "rlmr:word_range", "kwargs": {}}]),
        "bad_kwargs",
    ),
    (
        Reply.task(
            "Write an ode to a spoon with the word moon.",
            [{"type": "rule", "instruction_id": "keywords:existence", "kwargs": {"keywords": "moon"}}],
        ),
        "bad_kwargs",
    ),
    (Reply.task("Write a sonnet. " + "Make every line sing. " * 300, WORDS_80), "too_long"),
    (Reply.task(SEEDS[0]["prompt"].upper(), WORDS_80), "duplicate"),  # a seed, shouted
    (Reply.task(SEEDS[0]["prompt"].replace("small", "little"), WORDS_80), "near_duplicate"),
    (valid(1), "duplicate"),  # the first kept answer again
    (Reply.error(503), "retried"),
    (Reply.error(502), "retried"),
    (Reply.slow(5.0, "late"), "retried"),
    (Reply.not_chat(), "retried"),
    (valid(3), None),
]
EXPECTED = Counter(reason for _, reason in MIX if reason not in (None, "retried"))


def write_seeds(path, records=SEEDS):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def options(tmp_path, server, **overrides):
    values = dict(
        seeds=[write_seeds(tmp_path / "seeds.jsonl")],
        base_url=server.base_url,
        model="scripted",
        target=6,
        output=str(tmp_path / "expanded.jsonl"),
        concurrency=4,
        timeout_s=1.0,
        backoff_s=0.01,
        backoff_max_s=0.05,
        max_retries=5,
        max_prompt_tokens=400,
        progress=False,
    )
    values.update(overrides)
    return ExpandOptions(**values)


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_scripted_mix_is_accounted_exactly_and_the_target_reached(tmp_path):
    with ScriptedChatServer([reply for reply, _ in MIX]) as server:
        summary = expand(options(tmp_path, server, target=6, concurrency=1))  # one at a time: no answer is
    log = server.log  # cancelled at the target before it is counted, so the reasons are exact

    assert summary.rejected == EXPECTED
    assert summary.kept == 6 and summary.reached
    assert summary.kept + sum(summary.rejected.values()) == summary.candidates
    assert summary.attempts == log.requests  # every HTTP attempt, retries included
    assert summary.requests == summary.answered + summary.failed + summary.cancelled
    assert summary.failed == 0
    assert log.served["status"] == 2 and log.served["not_chat"] == 1  # answered, then retried

    kept = read_jsonl(tmp_path / "expanded.jsonl")
    assert len(kept) == 6
    assert len({row["prompt"] for row in kept}) == 6
    rejects = read_jsonl(tmp_path / "expanded.rejects.jsonl")
    assert Counter(row["reason"] for row in rejects) == EXPECTED
    near = next(row for row in rejects if row["reason"] == "near_duplicate")
    assert near["similar_to"].endswith("seeds.jsonl row 1")
    assert not list(tmp_path.glob(".*.partial"))  # journals renamed into place
    assert summary.constraint_types["punctuation:no_comma"] == 3
    assert sum(summary.genres.values()) == 6


def test_requests_carry_seed_then_generated_demonstrations_and_the_catalog(tmp_path):
    with ScriptedChatServer(keep_bodies=True) as server:
        expand(options(tmp_path, server, target=8, concurrency=1, demos=4))
    bodies = server.log.bodies
    assert all(body["model"] == "scripted" and body["temperature"] == 1.0 for body in bodies)
    first, last = bodies[0]["messages"][0]["content"], bodies[-1]["messages"][0]["content"]
    assert "Here are 3 example tasks" in first  # only 3 seeds exist, no generated prompt yet
    assert "Here are 4 example tasks" in last
    generated = [row["prompt"] for row in read_jsonl(tmp_path / "expanded.jsonl")]
    assert any(prompt in last for prompt in generated)  # the pool feeds later requests
    assert all(f"  - {iid}:" in first for iid in known_instruction_ids())


def test_output_feeds_convert_unchanged_through_the_cli(tmp_path, capsys):
    unstated = Reply.task(
        "Write a diary entry of a night-shift baker.",
        [{"type": "rule", "instruction_id": "rlmr:word_range", "kwargs": {"min_words": 50, "max_words": 90}}],
        genre="Diary Entry",
    )
    with ScriptedChatServer([unstated]) as server:
        seeds = write_seeds(tmp_path / "seeds.jsonl")
        out = tmp_path / "expanded.jsonl"
        argv = ["expand", "--seeds", seeds, "--base-url", server.base_url, "--model", "m", "--target", "5"]
        assert main([*argv, "--output", str(out), "--concurrency", "1", "--no-progress"]) == 0
    assert "expand: 5/5 prompts (target reached)" in capsys.readouterr().out

    rows = read_jsonl(out)
    baker = next(row for row in rows if "baker" in row["prompt"])
    assert baker["prompt"].endswith("Write between 50 and 90 words.")  # phrasing appended, as augment does
    assert baker["origin"]["appended"] == [0] and baker["genre"] == "diary entry"

    assert main(["convert", "--input", str(out), "--output-dir", str(tmp_path / "parquet"), "--no-progress"]) == 0
    converted = pq.read_table(tmp_path / "parquet" / "train.parquet").to_pylist()
    converted += pq.read_table(tmp_path / "parquet" / "val.parquet").to_pylist()
    assert len(converted) == 5
    assert read_jsonl(tmp_path / "parquet" / "rejects.jsonl") == []
    by_prompt = {row["prompt"][-1]["content"]: row for row in converted}
    for row in rows:
        spec = ConstraintSpec.parse(by_prompt[row["prompt"]]["reward_model"]["ground_truth"])
        assert [c.model_dump() for c in spec.constraints] == row["constraints"]
        assert by_prompt[row["prompt"]]["data_source"] == "rlmr_expand"


def test_resume_after_the_process_is_killed(tmp_path):
    # One request at a time: request 6 arriving means answers 1-5 were processed and flushed.
    script = [valid(1), Reply.text("garbage"), valid(2), valid(3), valid(1), Reply.hang()]
    with ScriptedChatServer(script) as server:
        seeds = write_seeds(tmp_path / "seeds.jsonl")
        out = tmp_path / "expanded.jsonl"
        argv = ["expand", "--seeds", seeds, "--base-url", server.base_url, "--model", "m", "--target", "7"]
        argv += ["--output", str(out), "--concurrency", "1", "--no-progress"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen([sys.executable, "-m", "data_prep", *argv], cwd=ROOT, env=env)
        try:
            assert server.wait_for_requests(6, timeout_s=120)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)

        journal = tmp_path / ".expanded.jsonl.partial"
        assert not out.exists()
        assert len(read_jsonl(journal)) == 3
        assert Counter(r["reason"] for r in read_jsonl(tmp_path / ".expanded.rejects.jsonl.partial")) == {
            "malformed": 1,
            "duplicate": 1,
        }
        with open(journal, "a") as handle:
            handle.write('{"prompt": "a torn li')  # a line cut mid-write is dropped on resume

        summary = expand(options(tmp_path, server, target=7))
    assert summary.resumed == 3 and summary.kept == 4 and summary.total == 7
    rows = read_jsonl(out)
    assert len(rows) == 7 and len({row["prompt"] for row in rows}) == 7
    assert len(read_jsonl(tmp_path / "expanded.rejects.jsonl")) == 2 + sum(summary.rejected.values())
    assert not journal.exists()

    with ScriptedChatServer([valid(2)]) as server:  # a finished output resumes too: raise the target
        summary = expand(options(tmp_path, server, target=9, concurrency=1))
    assert summary.resumed == 7 and summary.rejected == {"duplicate": 1} and len(read_jsonl(out)) == 9


def test_a_failing_server_stops_the_run_and_keeps_the_journal(tmp_path):
    with ScriptedChatServer([valid(1)], fallback=lambda i: Reply.error(500)) as server:
        with pytest.raises(ServerFailure, match="3 requests failed after 1 retries"):
            expand(options(tmp_path, server, concurrency=1, max_retries=1, max_failures=3))
    assert server.log.requests == 1 + 3 * 2
    assert not (tmp_path / "expanded.jsonl").exists()
    assert len(read_jsonl(tmp_path / ".expanded.jsonl.partial")) == 1

    with ScriptedChatServer(fallback=lambda i: Reply.error(404)) as server:
        with pytest.raises(ServerFailure, match="refused"):
            expand(options(tmp_path, server, concurrency=2))
    assert server.log.requests <= 2  # a 4xx is not retried


def test_request_budget_ends_a_run_that_cannot_reach_its_target(tmp_path, capsys):
    with ScriptedChatServer(fallback=lambda i: valid(1)) as server:
        seeds = write_seeds(tmp_path / "seeds.jsonl")
        argv = ["expand", "--seeds", seeds, "--base-url", server.base_url, "--model", "m", "--target", "3"]
        argv += ["--output", str(tmp_path / "out.jsonl"), "--max-requests", "5", "--no-progress"]
        assert main(argv) == 1
    assert "expand: 1/3 prompts (request budget spent" in capsys.readouterr().out
    assert server.log.requests == 5
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 1
    assert len(read_jsonl(tmp_path / "out.rejects.jsonl")) == 4


def test_concurrency_is_bounded_and_every_request_accounted_for(tmp_path):
    with ScriptedChatServer(latency_s=0.05) as server:
        summary = expand(options(tmp_path, server, target=12, concurrency=3))
    assert 1 < server.log.max_in_flight <= 3
    assert summary.kept == 12 and len(read_jsonl(tmp_path / "expanded.jsonl")) == 12
    assert summary.requests == summary.answered + summary.failed + summary.cancelled == server.log.requests


def test_bad_inputs_are_errors_naming_file_and_row(tmp_path):
    seeds = write_seeds(
        tmp_path / "bad_seeds.jsonl", [SEEDS[0], {"prompt": "x", "constraints": [{"instruction_id": "no"}]}]
    )
    with pytest.raises(InputError, match=r"bad_seeds.jsonl row 2: unknown_instruction_id"):
        expand(options(tmp_path, NOWHERE, seeds=[seeds]))
    (tmp_path / "expanded.jsonl").write_text('{"prompt": "ok", "constraints": []}\n{"oops": 1}\n')
    with pytest.raises(InputError, match=r"expanded.jsonl: row 2: not an expand record"):
        expand(options(tmp_path, NOWHERE))
    assert not (tmp_path / ".expanded.jsonl.partial").exists()


def test_answer_parsing():
    assert parse_answer('{"prompt": "p"}') == {"prompt": "p"}
    assert parse_answer('Here it is:\n```json\n{"prompt": "p"}\n```\nEnjoy.') == {"prompt": "p"}
    for bad in ('```json\n{"a": 1}\n```\n```json\n{"b": 2}\n```', "[]", '{"prompt": "p"', ""):
        with pytest.raises(CandidateRejected) as err:
            parse_answer(bad)
        assert err.value.reason == "malformed"


def test_near_duplicate_index_finds_copies_and_lets_distinct_texts_through():
    index = NearDuplicateIndex(0.7)
    base = "Write a story about an old clockmaker who repairs the town clock every winter before the snow"
    assert index.check_and_add(base, "a") is None
    assert index.check_and_add(base.upper() + "!", "b").reason == "duplicate"
    near = index.find(base.replace("winter", "autumn"))
    assert near.reason == "near_duplicate" and near.label == "a" and 0.7 <= near.similarity < 1
    assert index.find("Write a story about a young baker who bakes bread for the harbour every morning") is None
    assert index.check_and_add("写一首关于秋天的诗，描写落叶和归途。", "zh") is None
    assert index.find("写一首关于秋天的诗，描写落叶与归途。").label == "zh"
    assert len(index) == 2
    merging = NearDuplicateIndex(0.7, merge_every=40)  # the sorted arrays, not only the pending dict
    for i in range(30):
        merging.add(f"{base} number {i} of the series", f"row {i}")
    assert merging.find(f"{base} number 7 of the series").reason == "duplicate"
    assert merging.find(f"{base} number 7 of the set").label == "row 7"
    strict = NearDuplicateIndex(1.0)
    strict.add(base, "a")
    assert strict.find(base.replace("winter", "autumn")) is None and strict.find(base).reason == "duplicate"


SAMPLE_KWARGS = {
    "keywords:existence": {"keywords": ["lantern", "harbour"]},
    "keywords:frequency": {"keyword": "tide", "frequency": 3, "relation": "at least"},
    "keywords:forbidden_words": {"forbidden_words": ["suddenly"]},
    "keywords:letter_frequency": {"letter": "z", "let_frequency": 4, "let_relation": "less than"},
    "language:response_language": {"language": "fr"},
    "length_constraints:number_sentences": {"num_sentences": 12, "relation": "less than"},
    "length_constraints:number_paragraphs": {"num_paragraphs": 4},
    "length_constraints:number_words": {"num_words": 250, "relation": "at least"},
    "length_constraints:nth_paragraph_first_word": {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "night"},
    "detectable_content:number_placeholders": {"num_placeholders": 2},
    "detectable_content:postscript": {"postscript_marker": "P.S."},
    "detectable_format:number_bullet_lists": {"num_bullets": 5},
    "detectable_format:number_highlighted_sections": {"num_highlights": 2},
    "detectable_format:multiple_sections": {"section_spliter": "Part", "num_sections": 3},
    "combination:repeat_prompt": {"prompt_to_repeat": "Write about the moon."},
    "startend:end_checker": {"end_phrase": "Is there anything else?"},
    "change_case:capital_word_frequency": {"capital_frequency": 5, "capital_relation": "less than"},
    "rlmr:word_range": {"min_words": 60, "max_words": 120},
    "rlmr:char_range": {"max_chars": 300},
    "rlmr:forbidden_words": {"forbidden_words": ["tapestry", "delve"]},
    "rlmr:title": {},
    "rlmr:line_count": {"max_lines": 14},
    "rlmr:stanza_count": {"min_stanzas": 3, "max_stanzas": 3},
}


@pytest.mark.parametrize("instruction_id", sorted(known_instruction_ids()))
def test_every_constraint_description_counts_as_stated(instruction_id):
    constraint = RuleConstraint(instruction_id=instruction_id, kwargs=SAMPLE_KWARGS.get(instruction_id, {}))
    bare = "Write a short story about a ferry crossing at dawn."
    assert not is_stated(bare, constraint)
    prompt, appended = ensure_stated(bare, [constraint])
    assert appended == [0] and prompt.startswith(bare + "\n\n")
    assert is_stated(prompt, constraint)
    assert ensure_stated(prompt, [constraint]) == (prompt, [])  # never appended twice


def test_stated_constraints_are_left_alone_and_topic_words_are_not_a_statement():
    worded = "Write a poem about the sea in at most 14 lines, and do not use the word tapestry."
    lines = RuleConstraint(instruction_id="rlmr:line_count", kwargs={"max_lines": 14})
    banned = RuleConstraint(instruction_id="rlmr:forbidden_words", kwargs={"forbidden_words": ["tapestry"]})
    assert ensure_stated(worded, [lines, banned]) == (worded, [])
    about_the_sea = RuleConstraint(instruction_id="rlmr:forbidden_words", kwargs={"forbidden_words": ["sea"]})
    assert not is_stated("Write a poem about the sea.", about_the_sea)
    judge = JudgeConstraint(text="The poem is written in the second person.")
    assert is_stated("Write a poem in the second person about a lighthouse.", judge)
    chars = RuleConstraint(instruction_id="rlmr:char_range", kwargs={"max_chars": 100})
    assert (
        ensure_stated("写一首关于秋天的诗。", [chars])[0] == "写一首关于秋天的诗。\n\n全文字数不超过100字（不计空白）。"
    )
    assert describe(lines) == "Use at most 14 non-empty lines."
