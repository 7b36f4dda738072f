"""The one chat client (``rewards.chat``): one URL convention and one set of flags for every command."""

import pytest

from data_prep.cli import main as data_prep
from evaluation.cli import main as evaluation
from rewards.chat import server_root


@pytest.mark.parametrize("url", ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/"])
def test_a_server_root_with_or_without_v1_is_the_same_server(url):
    assert server_root(url) == "http://h:8000"


@pytest.mark.parametrize(
    "run, argv",
    [
        (data_prep, ["expand", "--seeds", "s.jsonl", "--base-url", "http://h", "--model", "m", "--target", "1"]),
        (evaluation, ["generate", "--prompts", "ifeval", "--base-url", "http://h", "--model", "m", "--output", "o"]),
    ],
)
def test_the_old_retries_flag_fails_naming_the_new_one(run, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run([*argv, "--output", "o.jsonl", "--retries", "2"] if run is data_prep else [*argv, "--retries", "2"])
    assert exit_info.value.code == 2
    assert "--retries is now --max-retries" in capsys.readouterr().err
