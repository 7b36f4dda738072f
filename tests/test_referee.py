"""The gold referee (evaluation/referee.py) on known texts, its documented ordering, its label noise, and
the referee behind the chat protocol as the critic of ``evaluation writingbench`` and the judge of ``pairwise``."""

import json
import random

import pytest

from evaluation import pairwise, writingbench
from evaluation.cli import main
from evaluation.referee import RefereeBand, critic_grade, length_fit, noisy_preference, score
from recipe.rlmr.dev.servers.referee import RefereeServer, answer, read_critic_request, read_pairwise_request

PROMPT = "Write a short poem about a lighthouse keeper and the winter storm. Answer in fewer than 50 words."
BAND = RefereeBand(10, 30)
GOOD = (
    "The lighthouse keeper climbs the stair at dusk. Winter storm clouds gather over black water. "
    "He trims the wick and waits, and the beam swings out across the waves until morning."
)


def test_known_text_scores_each_part():
    graded = score(PROMPT, GOOD, BAND)
    assert graded.words == 31 and graded.fit == pytest.approx(1 - 1 / 30)
    assert graded.distinct2 == 1.0 and graded.relevance == 1.0 and graded.complete == 1.0
    assert graded.boilerplate == 0.0
    assert graded.score == pytest.approx(0.35 * (1 - 1 / 30) + 0.25 + 0.25 + 0.15)


@pytest.mark.parametrize(
    "worse, why",
    [
        (GOOD[:-1] + " and the", "cut off mid-sentence"),
        ("The keeper waits. " * 8, "repetition"),
        ("Bread rises in the oven while the baker hums a tune about his garden and the summer fair.", "off topic"),
        ("Sure, here is a poem! " + GOOD + " I hope this helps.", "boilerplate"),
        (" ".join([GOOD] * 3), "far past the length band"),
        ("A lighthouse.", "far too short"),
    ],
)
def test_documented_ordering(worse, why):
    assert score(PROMPT, worse, BAND).score < score(PROMPT, GOOD, BAND).score, why


def test_length_fit_peaks_inside_the_band_and_longer_is_not_better():
    fits = [length_fit(w, BAND) for w in range(0, 70)]
    assert max(fits) == 1.0 and all(f == 1.0 for f in fits[10:31])
    assert fits[:11] == sorted(fits[:11]) and fits[30:] == sorted(fits[30:], reverse=True)
    assert length_fit(60, BAND) == 0.0


def test_relevance_is_capped_so_stuffing_does_not_pay():
    stuffed = "Lighthouse keeper winter storm poem lighthouse keeper winter storm. " * 2
    assert (
        score(PROMPT, stuffed, BAND).relevance
        == score(PROMPT, "The lighthouse keeper braves the storm.", BAND).relevance
    )


def test_the_referee_never_reads_constraint_verdicts():
    # the same text scores the same whatever limit the prompt states: obeying earns nothing by itself
    assert score(PROMPT, GOOD, BAND) == score(PROMPT.replace("fewer than 50", "fewer than 5"), GOOD, BAND)


def test_label_noise_follows_the_documented_sigmoid():
    rng = random.Random(0)
    draws = [noisy_preference(0.55, 0.50, 0.05, rng) for _ in range(20000)]
    assert sum(draws) / len(draws) == pytest.approx(1 / (1 + pytest.importorskip("math").exp(-1)), abs=0.01)
    assert all(noisy_preference(0.6, 0.5, 0.0, rng) for _ in range(100))
    with pytest.raises(ValueError):
        noisy_preference(0.5, 0.5, -1.0, rng)


def test_critic_grade_is_an_integer_from_1_to_10():
    assert [critic_grade(v) for v in (0.0, 0.5, 1.0, -3.0, 7.0)] == [1, 6, 10, 1, 10]


def test_requests_read_back_from_the_commands_own_messages():
    criterion = {"name": "c", "criteria_description": "d"}
    user = writingbench.build_messages(PROMPT, GOOD, criterion)[1]["content"]
    assert read_critic_request(user) == (PROMPT, GOOD)
    user = pairwise.build_messages(PROMPT, GOOD, "second text")[1]["content"]
    assert read_pairwise_request(user) == (PROMPT, GOOD, "second text")


def test_answers_in_each_protocol_and_refuses_others():
    critic = json.loads(answer({"messages": writingbench.build_messages(PROMPT, GOOD, {"name": "c"})}, BAND))
    assert critic["score"] == critic_grade(score(PROMPT, GOOD, BAND).score)
    bad = "The keeper waits. " * 8
    first = json.loads(answer({"messages": pairwise.build_messages(PROMPT, GOOD, bad)}, BAND))
    second = json.loads(answer({"messages": pairwise.build_messages(PROMPT, bad, GOOD)}, BAND))
    assert (first["winner"], second["winner"]) == ("first", "second")
    tie = json.loads(answer({"messages": pairwise.build_messages(PROMPT, GOOD, GOOD)}, BAND))
    assert tie["winner"] == "tie"
    with pytest.raises(ValueError):
        answer({"messages": [{"role": "user", "content": "hello"}]})


def test_served_referee_judges_pairwise_and_critiques_writingbench(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    prompts = [PROMPT, "Write a letter about a night train and the sleeping city. Keep it short."]
    good = [GOOD, "Dear friend, the night train hums past the sleeping city and I think of you. Write soon."]
    a.write_text(
        "".join(
            json.dumps({"id": i, "prompt": p, "response": g}) + "\n"
            for i, (p, g) in enumerate(zip(prompts, good, strict=True))
        )
    )
    b.write_text(
        "".join(json.dumps({"id": i, "prompt": p, "response": "ok ok ok ok"}) + "\n" for i, p in enumerate(prompts))
    )
    with RefereeServer(BAND) as referee:
        argv = ["pairwise", "--a", str(a), "--b", str(b), "--judge-url", referee.url, "--judge-model", "referee"]
        assert main([*argv, "--output", str(tmp_path / "pw.json"), "--no-progress", "--bootstrap", "50"]) == 0
        from evaluation.files import read_prompts

        query = read_prompts("writingbench")[0]
        wb = tmp_path / "wb.jsonl"
        wb.write_text(json.dumps({"id": query.id, "response": GOOD}) + "\n")
        argv = ["writingbench", "--responses", str(wb), "--critic-url", referee.url, "--critic-model", "referee"]
        assert main([*argv, "--output", str(tmp_path / "wb.json"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "pw.json").read_text())["overall"]["win_rate"] == 1.0
    result = json.loads((tmp_path / "wb.json").read_text())
    assert result["queries_scored"] == 1
