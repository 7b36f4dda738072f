"""Resume after a kill, and the checkpoint -> Hugging Face folder path, on verl's real trainer (CPU).

One training run, shared by every check here: the CPU launcher's trainer command (``recipe.rlmr.dev.launch``)
with ``trainer.save_freq=SAVE_FREQ`` and ``trainer.resume_mode=auto`` runs in its own session; once
checkpoint SAVE_FREQ is complete on disk (verl's ``latest_checkpointed_iteration.txt``) and the reward model
has scored a sample of step SAVE_FREQ + 1, the whole process group (trainer, Ray, workers) gets SIGKILL.
A checkpoint folder of step SAVE_FREQ + 1 is then planted half-written, as a kill during its save would
leave it. The very same command runs again in the same workdir and must finish STEPS steps, carrying on
the step counter, the data order, the optimizer and the RLMR group filter, and ignoring the half-written
folder. Then ``python -m verl.model_merger merge --backend fsdp`` turns checkpoint SAVE_FREQ into a Hugging
Face folder that transformers loads and chats with.

Oracles, each of which fails when the thing it guards breaks (see docs/checkpoints.md):

- data order: verl's sampler draws ``torch.randperm`` from a generator seeded with ``data.seed``; every
  prompt fetched (a step's batch plus the filter's refills, counted by ``rlmr/filter/resampled_prompts``)
  takes the next position of that stream, so each step's trained prompts (``trainer.rollout_data_dir``)
  lie in that step's window of it. The uninterrupted first steps confirm the stream; after the resume a
  dataloader restarted from scratch repeats prompts, one that lost its place skips them.
- optimizer: Adam's per-parameter ``step`` in the final checkpoint counts the updates of both runs; a fresh
  optimizer after the resume would count only the second run's.
- merged weights: bit-equal to checkpoint SAVE_FREQ's tensors rounded to bf16 (the merger writes bf16), and
  unequal to the initial policy's and to the final checkpoint's, so merging the wrong step or the base
  model fails.

The data set is the word-limit set with a tighter limit (``WORD_LIMIT`` words), so that the random tiny
policy breaks it in most samples: groups where every sample violates are common (4 to 14 dropped per step
in one run), the RLMR filter drops them and refills from the dataloader, and those refills are part of the
data order checked across the kill; the dataloader then goes through the 25 training prompts more than once
in 4 steps, so the order is checked across epoch boundaries too.

Select with ``-m cpu_e2e``. Cost: two trainer start-ups, 4 short steps and a merge; measured 8 and 12 minutes
on a 2-core machine shared with other training runs (load average 10 to 27).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from recipe.rlmr.dev import launch
from recipe.rlmr.dev.demo import scalars_from_event_files


def trains(test):
    """Marks a test that needs the shared training run."""
    return pytest.mark.cpu_e2e(pytest.mark.slow(test))


SAVE_FREQ = 2  # checkpoints at step 2 and at the last step; the kill lands in step 3
STEPS = 4
PROMPTS, SAMPLES = 4, 4
RESPONSE_TOKENS = 48
WORD_LIMIT = 12  # most of the random policy's answers break it, so the filter has groups to drop
DATA_SEED = 0
KILL_DEADLINE_S = 900  # a loaded 2-core machine takes minutes to reach step SAVE_FREQ + 1
PLANTED = b"half-written by a kill during the save; loading this fails"


@dataclass
class ResumedRun:
    workdir: Path
    train_files: Path
    checkpoints: Path
    first_log: str
    second_log: str
    second_returncode: int
    first_scalars: dict[int, dict[str, float]]
    second_scalars: dict[int, dict[str, float]]
    tracker_at_kill: str
    folders_at_kill: list[str]
    survivors: list[str]  # processes of the killed run still alive after the kill
    planted: Path


def rm_texts_scored(rm_url: str) -> int:
    with urllib.request.urlopen(f"{rm_url}/stats", timeout=10) as response:
        return json.load(response)["texts"]


def processes_carrying(marker: str) -> list[str]:
    """Live processes (not zombies) whose environment holds ``marker``; Ray's processes inherit the trainer's."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited meanwhile, or not ours to read
            continue
        if state != "Z":
            found.append(f"{entry.name} {cmdline[:160]}")
    return found


def wait_for_kill_point(process: subprocess.Popen, tracker: Path, rm_url: str, log: Path) -> None:
    """Return once checkpoint SAVE_FREQ is complete and step SAVE_FREQ + 1 has started scoring samples."""
    deadline = time.monotonic() + KILL_DEADLINE_S
    scored_at_checkpoint = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"the first run exited ({process.returncode}) before the kill:\n{log.read_text()[-4000:]}"
            )
        if scored_at_checkpoint is None:
            if tracker.exists() and tracker.read_text().strip() == str(SAVE_FREQ):
                scored_at_checkpoint = rm_texts_scored(rm_url)
        elif rm_texts_scored(rm_url) > scored_at_checkpoint:
            return
        time.sleep(0.1)
    raise AssertionError(f"no checkpoint {SAVE_FREQ} followed by a scored sample within {KILL_DEADLINE_S} s")


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory) -> ResumedRun:
    workdir = tmp_path_factory.mktemp("resume")
    assets = launch.build_assets(workdir, data="word_limit", word_limit=WORD_LIMIT)
    checkpoints = workdir / "checkpoints"  # cpu_overrides' trainer.default_local_dir
    tracker = checkpoints / "latest_checkpointed_iteration.txt"
    tensorboard = workdir / "tensorboard"
    env = launch.cpu_env(workdir)
    marker = f"TENSORBOARD_DIR={tensorboard}"  # unique to this run's processes

    with launch.serve_reward_model(assets.reward_model, workdir / "reward_model_server.log") as rm_url:
        overrides = launch.cpu_overrides(
            assets,
            rm_url,
            workdir,
            steps=STEPS,
            prompts_per_step=PROMPTS,
            samples_per_prompt=SAMPLES,
            response_length=RESPONSE_TOKENS,
        )
        overrides += [
            f"data.seed={DATA_SEED}",
            f"trainer.save_freq={SAVE_FREQ}",
            "trainer.resume_mode=auto",  # the same command starts afresh and resumes
            f"trainer.rollout_data_dir={workdir / 'rollouts'}",
        ]
        command = launch.trainer_command("verl", overrides)

        first_log = workdir / "first.log"
        with open(first_log, "w") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_kill_point(process, tracker, rm_url, first_log)
        finally:
            with contextlib.suppress(ProcessLookupError):  # gone already if it failed before the kill point
                os.killpg(process.pid, signal.SIGKILL)  # start_new_session: the trainer and all it started
            process.wait(timeout=60)
        survivors = processes_carrying(marker)
        for _ in range(50):  # SIGKILL is immediate, reaping by init may lag a moment
            if not survivors:
                break
            time.sleep(0.2)
            survivors = processes_carrying(marker)
        for line in survivors:  # ours: leave nothing behind, the test below reports them
            os.kill(int(line.split()[0]), signal.SIGKILL)

        tracker_at_kill = tracker.read_text().strip()
        folders_at_kill = sorted(p.name for p in checkpoints.iterdir() if p.is_dir())
        first_events = sorted(tensorboard.glob("events.out.tfevents.*"))
        planted = checkpoints / f"global_step_{SAVE_FREQ + 1}"
        (planted / "actor").mkdir(parents=True)
        (planted / "actor" / "model_world_size_1_rank_0.pt").write_bytes(PLANTED)
        (planted / "data.pt").write_bytes(PLANTED)

        second_log = workdir / "second.log"
        with open(second_log, "w") as log:
            second = subprocess.run(
                command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=900,
                check=False,
                start_new_session=True,
            )
    second_events = sorted(set(tensorboard.glob("events.out.tfevents.*")) - set(first_events))
    return ResumedRun(
        workdir=workdir,
        train_files=assets.train_files,
        checkpoints=checkpoints,
        first_log=first_log.read_text(errors="replace"),
        second_log=second_log.read_text(errors="replace"),
        second_returncode=second.returncode,
        first_scalars=scalars_from_event_files(first_events),
        second_scalars=scalars_from_event_files(second_events),
        tracker_at_kill=tracker_at_kill,
        folders_at_kill=folders_at_kill,
        survivors=survivors,
        planted=planted,
    )


@pytest.fixture(scope="module")
def finished(resumed_run) -> ResumedRun:
    assert resumed_run.second_returncode == 0, resumed_run.second_log[-6000:]
    return resumed_run


@trains
def test_the_kill_landed_in_the_step_after_the_checkpoint_and_left_nothing_running(resumed_run):
    run = resumed_run
    assert run.tracker_at_kill == str(SAVE_FREQ)
    # save_freq: no checkpoint of step 1; the killed step never reached its (last-step) save
    assert run.folders_at_kill == [f"global_step_{SAVE_FREQ}"]
    assert sorted(run.first_scalars) == list(range(1, SAVE_FREQ + 1))
    assert f"step:{SAVE_FREQ + 1} -" not in run.first_log
    assert run.survivors == []


@trains
def test_the_resumed_run_continues_the_step_counter_to_the_end(finished):
    run = finished
    resumed_from = run.checkpoints / f"global_step_{SAVE_FREQ}"
    assert f"Resuming from {resumed_from}, setting global step to {SAVE_FREQ}" in run.second_log
    assert sorted(run.second_scalars) == list(range(SAVE_FREQ + 1, STEPS + 1))
    for step, metrics in run.second_scalars.items():
        assert metrics["training/global_step"] == step
    assert (run.checkpoints / "latest_checkpointed_iteration.txt").read_text().strip() == str(STEPS)
    assert (run.checkpoints / f"global_step_{STEPS}" / "actor" / "model_world_size_1_rank_0.pt").exists()


@trains
def test_a_half_written_newer_checkpoint_is_ignored(finished):
    """verl resumes from the tracker's step, not from the newest folder: the planted folder was never read
    (loading it would have failed) and, with save_freq=2, never rewritten."""
    assert (finished.planted / "actor" / "model_world_size_1_rank_0.pt").read_bytes() == PLANTED
    assert (finished.planted / "data.pt").read_bytes() == PLANTED


def sampler_stream(dataset_size: int, seed: int, length: int) -> list[int]:
    """The dataset indices verl's training dataloader yields, in order: torchdata's ``RandomSampler`` draws one
    ``torch.randperm`` per epoch from a generator seeded with ``data.seed`` (verl's ``create_rl_sampler``)."""
    import torch

    generator = torch.Generator()
    generator.manual_seed(seed)
    stream: list[int] = []
    while len(stream) < length:
        stream += torch.randperm(dataset_size, generator=generator).tolist()
    return stream


def trained_groups(run: ResumedRun) -> tuple[int, dict[int, list[int]]]:
    """Dataset size, and per step the dataset index of each trained group's prompt (from the rollout dumps;
    a group is one uid, SAMPLES responses to one prompt)."""
    import pyarrow.parquet as pq

    rows = pq.read_table(run.train_files).to_pylist()
    texts = [row["prompt"][-1]["content"] for row in rows]
    groups: dict[int, dict[str, list[int]]] = {}
    for dump in sorted((run.workdir / "rollouts").glob("*.jsonl")):
        for line in dump.read_text().splitlines():
            record = json.loads(line)
            matches = [index for index, text in enumerate(texts) if text in record["input"]]
            assert len(matches) == 1, f"{dump.name}: prompt of {record['input']!r} matches rows {matches}"
            uid = record["uid"].split("_")[0]  # trajectory key: {uid}_{session}_{output}
            groups.setdefault(record["step"], {}).setdefault(uid, []).append(matches[0])
    per_step = {}
    for step, by_uid in sorted(groups.items()):
        for uid, indices in by_uid.items():
            assert len(indices) == SAMPLES and len(set(indices)) == 1, f"step {step}, group {uid}: {indices}"
        per_step[step] = [indices[0] for indices in by_uid.values()]
    return len(rows), per_step


@trains
def test_the_data_order_carries_on_across_the_kill(finished):
    """Each step trains PROMPTS prompts from its own window of the sampler's stream: the batch plus the
    filter's refills (verl's sync DAPO refill fetches two prompts per dropped group and discards those still
    in flight when the batch is full, so a window also holds prompts not trained in this pass: the filter's
    doing, not the kill's). Windows follow each other across the kill, so within an epoch no prompt repeats
    and none is skipped beyond the window; the resumed run fetches the killed step's prompts again."""
    import torch

    run = finished
    dataset_size, per_step = trained_groups(run)
    scalars = {**run.first_scalars, **run.second_scalars}
    assert sorted(per_step) == list(range(1, STEPS + 1))
    fetched = {step: PROMPTS + int(scalars[step]["rlmr/filter/resampled_prompts"]) for step in scalars}
    stream = sampler_stream(dataset_size, DATA_SEED, sum(fetched.values()))
    start = 0
    trained_by_epoch: dict[int, list[int]] = {}
    for step, prompts in per_step.items():
        assert len(prompts) == PROMPTS, f"step {step}: {prompts}"
        unused = list(range(start, start + fetched[step]))  # the window's positions in the stream
        for index in prompts:
            position = next((p for p in unused if stream[p] == index), None)
            assert position is not None, (
                f"step {step} trained {prompts}, outside what it fetched: {stream[start : start + fetched[step]]}"
            )
            unused.remove(position)
            trained_by_epoch.setdefault(position // dataset_size, []).append(index)
        start += fetched[step]
    for epoch, prompts in trained_by_epoch.items():
        assert len(prompts) == len(set(prompts)), f"a prompt trained twice in epoch {epoch}: {sorted(prompts)}"
    # verl's dataloader state in each checkpoint: how far into the current epoch's permutation it had fetched
    for step in (SAVE_FREQ, STEPS):
        state = torch.load(run.checkpoints / f"global_step_{step}" / "data.pt", weights_only=False)
        fetched_until = sum(fetched[s] for s in range(1, step + 1))
        into_epoch = fetched_until - dataset_size * ((fetched_until - 1) // dataset_size)  # 1..dataset_size
        assert state["_num_yielded"] == into_epoch, (step, fetched_until)


@trains
def test_the_optimizer_state_carries_on(finished):
    """One optimizer update per step (ppo_mini_batch_size = the batch): Adam's step count in the final
    checkpoint counts both runs' updates; a fresh optimizer after the resume would hold STEPS - SAVE_FREQ."""
    import torch

    def adam_steps(step: int) -> set[float]:
        path = finished.checkpoints / f"global_step_{step}" / "actor" / "optim_world_size_1_rank_0.pt"
        optimizer = torch.load(path, map_location="cpu", weights_only=False)
        return {float(state["step"]) for state in optimizer["state"].values()}

    def scheduler_epoch(step: int) -> int:
        path = finished.checkpoints / f"global_step_{step}" / "actor" / "extra_state_world_size_1_rank_0.pt"
        return torch.load(path, map_location="cpu", weights_only=False)["lr_scheduler"]["last_epoch"]

    assert adam_steps(SAVE_FREQ) == {float(SAVE_FREQ)}
    assert adam_steps(STEPS) == {float(STEPS)}
    assert scheduler_epoch(SAVE_FREQ) == SAVE_FREQ
    assert scheduler_epoch(STEPS) == STEPS


@trains
def test_the_rlmr_filter_and_estimator_work_after_the_resume(finished):
    """The filter keeps no state across steps (sync mode: the replay buffer is empty between steps and verl
    does not checkpoint it), so carrying on means: its metrics and the estimator's are there after the resume
    and consistent, and it dropped and refilled groups (the refills are part of the data order above)."""
    run = finished
    scalars = {**run.first_scalars, **run.second_scalars}
    for step in range(SAVE_FREQ + 1, STEPS + 1):
        metrics = run.second_scalars[step]
        for tag in ("rlmr/violation_rate", "rlmr/filter/dropped_groups", "rlmr/filter/bound_hit", "actor/pg_loss"):
            assert tag in metrics, f"step {step} lacks {tag}"
        assert metrics["rlmr/filter/resampled_prompts"] >= metrics["rlmr/filter/dropped_groups"], step
        assert metrics["rlmr/filter/dropped_invalid_reward"] == 0, step
        assert metrics["rlmr/invalid_rewards"] == 0, step
    assert sum(metrics["rlmr/filter/dropped_all_violate"] for metrics in scalars.values()) > 0


# ---- checkpoint -> Hugging Face folder (verl's model merger) ----


def checkpoint_tensors(actor_dir: Path) -> dict:
    """The actor's full tensors from verl's FSDP checkpoint (one rank, so each DTensor's local part is whole)."""
    import torch

    assert json.loads((actor_dir / "fsdp_config.json").read_text())["world_size"] == 1
    state = torch.load(actor_dir / "model_world_size_1_rank_0.pt", map_location="cpu", weights_only=False)
    return {name: tensor.to_local() if hasattr(tensor, "to_local") else tensor for name, tensor in state.items()}


@pytest.fixture(scope="module")
def merged(finished) -> Path:
    import sys

    target = finished.workdir / "merged"
    actor_dir = finished.checkpoints / f"global_step_{SAVE_FREQ}" / "actor"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "verl.model_merger",
            "merge",
            "--backend",
            "fsdp",
            "--local_dir",
            str(actor_dir),
            "--target_dir",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return target


@trains
def test_the_merged_folder_loads_in_transformers_and_chats(merged):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(merged, local_files_only=True)
    assert model.dtype == torch.bfloat16  # the merger writes bf16 whatever the training dtype
    messages = [{"role": "user", "content": "Write one line about the sea."}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert tokenizer.decode(inputs["input_ids"][0]).endswith("assistant\n")  # the policy's chat template came along
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]


@trains
def test_the_merged_weights_are_the_actor_at_the_merged_step(finished, merged):
    """Bit-equal to checkpoint SAVE_FREQ's tensors in bf16; unequal to the initial policy and to the last step."""
    from safetensors.torch import load_file

    merged_tensors = load_file(merged / "model.safetensors")
    at_merged_step = checkpoint_tensors(finished.checkpoints / f"global_step_{SAVE_FREQ}" / "actor")
    at_last_step = checkpoint_tensors(finished.checkpoints / f"global_step_{STEPS}" / "actor")
    initial = load_file(finished.workdir / "policy" / "model.safetensors")
    assert set(merged_tensors) <= set(at_merged_step) and "model.embed_tokens.weight" in merged_tensors
    for name, tensor in merged_tensors.items():
        assert tensor.equal(at_merged_step[name].bfloat16()), name
    moved_from_initial = [name for name in merged_tensors if not merged_tensors[name].equal(initial[name].bfloat16())]
    moved_since = [name for name in merged_tensors if not merged_tensors[name].equal(at_last_step[name].bfloat16())]
    assert len(moved_from_initial) > len(merged_tensors) // 2, moved_from_initial
    assert len(moved_since) > len(merged_tensors) // 2, moved_since


def test_the_demo_resumes_only_when_asked_and_a_checkpoint_is_complete(tmp_path):
    """``make demo`` keeps its earlier table rows exactly when verl will resume (no training here)."""
    from recipe.rlmr.dev.demo import checkpoint_to_resume

    auto = ["trainer.save_freq=1", "trainer.resume_mode=auto"]
    assert checkpoint_to_resume(tmp_path, auto) is None  # nothing saved yet
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest_checkpointed_iteration.txt").write_text("3")
    assert checkpoint_to_resume(tmp_path, auto) == 3
    assert checkpoint_to_resume(tmp_path, ["trainer.save_freq=1"]) is None  # the launcher's default: disable
    assert checkpoint_to_resume(tmp_path, [*auto, "trainer.resume_mode=disable"]) is None  # the last one wins
