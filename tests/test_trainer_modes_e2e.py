"""RLMR the way clusters train: a two-node Ray cluster and verl's asynchronous mode ``colocate_async``,
end to end on CPU, then resumed. One run serves every check (about 5 minutes).

The cluster (``recipe.rlmr.dev.ray_cluster``): a head and a worker node, each started with ``ray start``
and resources of its own (8 CPU slots, 1 fake GPU slot), so verl's trainer (``trainer.nnodes=2``,
one FSDP rank and one ``hf`` rollout replica per node) spans both. The worker node is started the way
a node without verl-rlmr installed looks to verl: entry-point plugins off
(``VERL_USE_EXTERNAL_PLUGINS=none``) and no ``VERL_PLATFORM``; the plugin and the CPU backend reach it
only through the job's runtime environment (``VERL_USE_EXTERNAL_MODULES``, docs/launch.md). The writing
RM (a child process) and the judge (``FakeJudge``, in this process) listen on loopback, which both
nodes reach.

The run: 4 steps (checkpoints at 2 and 4) on the demo's sample prompts, whose rule constraints the
random tiny policy mostly breaks, so the group filter drops and refills at every step, each prompt with
an added free-text constraint the judge always accepts (``short_circuit=false``: every sample asks
it); then the same command with ``trainer.resume_mode=auto`` and 5 steps. Checks what the sync run
checks (tests/test_cpu_e2e.py): verdicts reach the estimator, violators negative, the filter drops and
refills, no invalid reward moves an advantage, and the checkpoint resumes; and that both nodes
generated, the judge answered, and its verdicts reached the per-rule monitor.

``separate_async`` is refused on the CPU backend at launch (tests/test_config.py checks the message):
verl 0.9.1 pushes weights to its standalone rollout pool only through NCCL-class checkpoint engines.
"""

import math
import re

import pytest

from recipe.rlmr.dev import launch, sample_data
from recipe.rlmr.dev.demo import read_scalars
from recipe.rlmr.dev.ray_cluster import local_cluster
from recipe.rlmr.dev.servers.reward import FakeJudge

pytestmark = [pytest.mark.cpu_e2e, pytest.mark.slow]

MODE = "colocate_async"
NODES = 2
REPLICA_LINE = re.compile(r"hf rollout replica (\d+) on node (\w+) generates on")


def sample_data_with_judge(workdir):
    """The demo's sample prompts, each with ``ON_TOPIC`` added to its rule constraints."""
    return sample_data.build(workdir / "data_sample_judge", seed=0, judge_constraint=sample_data.ON_TOPIC)


@pytest.fixture(scope="module")
def cluster_runs(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cluster-async")
    data = sample_data_with_judge(workdir)
    head_env = launch.trainer_env(workdir)
    worker_env = {key: value for key, value in head_env.items() if key != "VERL_PLATFORM"}
    worker_env["VERL_USE_EXTERNAL_PLUGINS"] = "none"  # as if verl-rlmr were not installed there
    with local_cluster(NODES, cpus_per_node=8, env=head_env, worker_env=worker_env) as cluster, FakeJudge() as judge:
        node_ids = cluster.node_ids()
        common = [
            f"trainer.v1.trainer_mode={MODE}",
            "trainer.save_freq=2",
            f"data.train_files={data / 'train.parquet'}",
            f"data.val_files={data / 'val.parquet'}",
            f"reward.rlmr.judge.url={judge.url}",
            "reward.rlmr.judge.model=fake-judge",
            "reward.rlmr.short_circuit=false",
        ]
        runs = []
        for steps, extra in ((4, []), (5, ["trainer.resume_mode=auto"])):
            result = launch.run(
                workdir,
                steps=steps,
                entry="verl",
                timeout_s=600,
                samples_per_prompt=8,
                data="sample",
                extra=[*common, *extra],
                ray_address=cluster.address,
                nnodes=NODES,
                env=cluster.driver_env(),
            )
            log = (workdir / "trainer.log").read_text(errors="replace")
            assert result.returncode == 0, log[-6000:]
            runs.append((log, read_scalars(workdir / "tensorboard")))
        judged = judge.log.requests
    (first_log, before), (second_log, after) = runs
    return dict(
        workdir=workdir,
        node_ids=node_ids,
        judged=judged,
        first_log=first_log,
        second_log=second_log,
        before=before,
        after=after,
    )


def test_the_run_spanned_both_nodes_with_the_plugin_from_the_runtime_env(cluster_runs):
    assert len(set(cluster_runs["node_ids"])) == NODES
    for log in (cluster_runs["first_log"], cluster_runs["second_log"]):
        replicas = dict(REPLICA_LINE.findall(log))
        assert sorted(replicas) == [str(rank) for rank in range(NODES)], replicas
        assert set(replicas.values()) == set(cluster_runs["node_ids"]), (replicas, cluster_runs["node_ids"])
        assert not re.search(r"\[verl-rlmr\] .* FAILED", log)  # the plugin's own failure message
        assert "'nnodes': 2" in log


def test_the_run_was_asynchronous_and_logged_every_step(cluster_runs):
    assert f"'trainer_mode': '{MODE}'" in cluster_runs["first_log"]  # verl's config dump
    assert [step for step in sorted(cluster_runs["before"]) if step > 0] == [1, 2, 3, 4]


def test_verdicts_reach_the_estimator_and_violators_end_negative(cluster_runs):
    before = cluster_runs["before"]
    mixed_steps = 0
    for step in range(1, 5):
        metrics = before[step]
        assert 0.0 <= metrics["rlmr/violation_rate"] <= 1.0, step
        if metrics["rlmr/groups_mixed"] >= 1:
            mixed_steps += 1
            assert metrics["rlmr/adv_violators_max"] < 0, step
            assert metrics["rlmr/delta_mean"] >= 0, step
    assert mixed_steps >= 2


def test_the_judge_answered_every_sample_and_its_verdicts_reached_the_monitor(cluster_runs):
    before = cluster_runs["before"]
    # every sample asks the judge (short_circuit off): at least a batch of 4 prompts x 8 samples per step
    assert cluster_runs["judged"] >= 4 * 8 * 5
    for step in range(1, 5):
        assert before[step]["rlmr/violations/judge"] == 0, step  # FakeJudge accepts sample_data.ON_TOPIC every time


def test_the_filter_drops_and_refills_and_no_invalid_reward_moves_an_advantage(cluster_runs):
    before = cluster_runs["before"]
    for step in range(1, 5):
        metrics = before[step]
        assert metrics["rlmr/filter/resampled_prompts"] >= metrics["rlmr/filter/dropped_groups"], step
        assert metrics["rlmr/invalid_rewards"] == 0 and metrics["rlmr/filter/dropped_invalid_reward"] == 0, step
        assert math.isnan(metrics["rlmr/adv_invalid_abs_max"]) or metrics["rlmr/adv_invalid_abs_max"] == 0
        assert metrics["rlmr/adv_nonfinite"] == 0, step
    assert sum(before[step]["rlmr/filter/dropped_all_violate"] for step in range(1, 5)) > 0


def test_the_checkpoint_resumes_on_the_cluster(cluster_runs):
    workdir = cluster_runs["workdir"]
    checkpoint = workdir / "checkpoints" / "global_step_4"
    assert f"Resuming from {checkpoint}, setting global step to 4" in cluster_runs["second_log"]
    assert 5 in cluster_runs["after"] and "rlmr/violation_rate" in cluster_runs["after"][5]
    assert sorted(path.name for path in (checkpoint / "actor").glob("model_world_size_2_rank_*.pt")) == [
        "model_world_size_2_rank_0.pt",
        "model_world_size_2_rank_1.pt",
    ]
