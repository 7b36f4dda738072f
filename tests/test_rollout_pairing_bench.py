"""benchmarks/rollout_pairing.py at a tiny size: it drives the real ``HFRolloutServer`` four ways and
reports what differs; with every request alone (``max_num_seqs`` 1) the order cannot matter."""

import re
from pathlib import Path

import pytest

from recipe.rlmr.dev.tiny_assets import build_policy_model

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "rollout_pairing.py"


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script(SCRIPT)


def test_tiny_pairing_report(bench, tmp_path, capsys):
    model = build_policy_model(tmp_path / "policy")
    assert bench.main(["--model", str(model), "--prompts", "3", "--samples", "2", "--tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert "3 prompts x 2 samples x 8 tokens" in out
    rows = {m.group(1).strip(): int(m.group(2)) for m in re.finditer(r"^  ([a-z ]+?)\s{2,}(\d+) of 6\s", out, re.M)}
    assert set(rows) == {"reversed", "two waves", "one at a time"}  # each way measured against the reference
    alone = re.search(r"one at a time, reordered, against one at a time: (\d+) of 6 responses differ", out)
    assert alone and int(alone.group(1)) == 0  # every request alone: its tokens cannot depend on the others


def test_compare_counts_responses_outside_the_prompts_multiset(bench):
    from verl.workers.rollout.replica import TokenOutput

    def out(tokens, logprob=0.0):
        return TokenOutput(token_ids=tokens, log_probs=[logprob] * len(tokens))

    requests = [[1], [1], [2]]
    reference = {0: out([5]), 1: out([6]), 2: out([7])}
    swapped = {0: out([6]), 1: out([5], 0.25), 2: out([7])}  # a prompt's samples in another order: equal
    assert bench.compare(requests, reference, swapped) == (0, 0.25)
    assert bench.compare(requests, reference, {0: out([5]), 1: out([5]), 2: out([8])}) == (2, 0.0)
