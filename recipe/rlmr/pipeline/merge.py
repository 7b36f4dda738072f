"""Stage ``merge``: an FSDP checkpoint to a Hugging Face folder in float32, through verl's ``model_merger``.

verl's merger (0.9.1) casts every shard to bfloat16 before it saves (``FSDPModelMerger._load_and_merge_state_dicts``),
so a float32 policy comes out rounded to 8 mantissa bits. We keep verl's merger for everything it does
(config, tokenizer, generation config, tied weights, its own output check) and then put the checkpoint's
own float32 tensors back: the rank shards are read again, DTensor shards concatenated along their
``Shard`` dimension (FSDP without tensor parallelism, what verl's merger supports too), and the model
saved again in float32. The largest absolute difference between the saved folder and the checkpoint
is returned (0.0 when exact).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path


@contextlib.contextmanager
def quiet_mesh_warnings():
    """torch warns on the terminal, once per loaded shard, that a pickled DeviceMesh has no process group:
    true and harmless off the training job, so silenced while checkpoints are read."""
    mesh_logger = logging.getLogger("torch.distributed.device_mesh")
    level = mesh_logger.level
    mesh_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        mesh_logger.setLevel(level)


def checkpoint_state_dict(actor_dir: Path) -> dict:
    """The full state dict of an FSDP actor checkpoint, in the dtype it was saved in."""
    import torch
    from torch.distributed.tensor import DTensor, Shard

    shards = sorted(Path(actor_dir).glob("model_world_size_*_rank_*.pt"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    if not shards:
        raise FileNotFoundError(f"{actor_dir}: no model_world_size_*_rank_*.pt shards (an FSDP actor checkpoint?)")
    with quiet_mesh_warnings():
        states = [torch.load(path, map_location="cpu", weights_only=False) for path in shards]
    merged = {}
    for key, first in states[0].items():
        if isinstance(first, DTensor):
            (placement,) = first.placements[-1:]
            parts = [state[key]._local_tensor for state in states]
            merged[key] = torch.cat(parts, dim=placement.dim) if isinstance(placement, Shard) else parts[0]
        else:
            merged[key] = first
    return merged


def verl_merge(argv: list[str], log: Path) -> None:
    """``python -m verl.model_merger ARGV`` run in this process (verl's own parser, config and FSDP merger;
    the pipeline has verl imported already, where a subprocess spent ~7 s importing it), output in ``log``."""
    from verl.model_merger.base_model_merger import generate_config_from_args, parse_args
    from verl.model_merger.fsdp_model_merger import FSDPModelMerger

    command = f"python -m verl.model_merger {' '.join(argv)}"
    saved = sys.argv
    sys.argv = ["verl.model_merger", *argv]  # verl's parse_args reads sys.argv
    try:
        config = generate_config_from_args(parse_args())
    finally:
        sys.argv = saved
    if config.backend != "fsdp":
        raise ValueError(f"{command}: only the fsdp backend is merged here")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        try:
            with quiet_mesh_warnings():
                merger = FSDPModelMerger(config)
                merger.merge_and_save()
                merger.cleanup()
        except Exception as err:
            raise RuntimeError(f"{command} failed: {err}; log: {log}") from err


def merge_fp32(actor_dir: Path, target: Path, log: Path) -> float:
    """verl's merge into ``target``, then the checkpoint's float32 weights (module docstring)."""
    import torch
    from transformers import AutoModelForCausalLM

    verl_merge(["merge", "--backend", "fsdp", "--local_dir", str(actor_dir), "--target_dir", str(target)], log)
    state = checkpoint_state_dict(actor_dir)
    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    tied = {k for k in missing if k.endswith("lm_head.weight") and model.config.tie_word_embeddings}
    if set(missing) - tied or unexpected:
        raise RuntimeError(
            f"{actor_dir}: checkpoint keys do not match the model: missing {missing}, extra {unexpected}"
        )
    model.config.dtype = torch.float32
    model.save_pretrained(target)
    reloaded = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).state_dict()
    return max(float((reloaded[k] - v.float()).abs().max()) for k, v in state.items() if k in reloaded)
