"""verl's private surface we rely on (``recipe.rlmr.verl_surface``) holds in the installed verl: each joint
exists with the expected signature or shape. A verl upgrade that moves one fails its named case here."""

import re
from pathlib import Path

import pytest

from recipe.rlmr.verl_surface import JOINTS, Joint, check_joint

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("joint", JOINTS, ids=[f"{j.module}:{j.name}" for j in JOINTS])
def test_each_joint_holds_in_the_installed_verl(joint):
    assert check_joint(joint) is None


def test_a_moved_joint_is_named_with_the_file_that_needs_it():
    gone = Joint("verl.trainer.ppo.v1.trainer_base", "PPOTrainer._no_such_method", "recipe/rlmr/x.py", "why")
    assert "PPOTrainer._no_such_method is gone" in check_joint(gone) and "recipe/rlmr/x.py" in check_joint(gone)
    changed = Joint(
        "verl.trainer.ppo.v1.trainer_base", "PPOTrainer._compute_advantage", "x.py", "why", params=("self", "b")
    )
    assert "expects ('self', 'b')" in check_joint(changed)


def test_every_private_verl_name_our_code_uses_is_listed():
    """Underscore names imported from verl or reached through ``super()`` in our packages are all in JOINTS."""
    listed = {part for joint in JOINTS for part in joint.name.split(".")}
    used = set()
    for package in ("recipe", "rewards"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if "from verl" not in text and "import verl" not in text:
                continue  # super() here reaches our own classes
            used |= {(m, str(path)) for m in re.findall(r"super\(\)\.(_[a-z]\w*)\(", text) if m != "__init__"}
            for names in re.findall(r"from verl[\w.]* import ([^\n]+)", text):
                used |= {(n.strip(), str(path)) for n in names.split(",") if n.strip().startswith("_")}
    assert sorted((name, where) for name, where in used if name not in listed) == []
