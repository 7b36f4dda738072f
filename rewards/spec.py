"""The constraint spec stored with each prompt (``reward_model.ground_truth`` in verl parquet).

A spec is a list of constraints, each either

- ``{"type": "rule", "instruction_id": "length_constraints:number_words", "kwargs": {...}}``:
  machine-checkable, any IFEval instruction id or one of ours (``rlmr:*``, see
  ``rewards.constraints``); or
- ``{"type": "judge", "text": "The poem is written in second person."}``: free text, checked by
  the generative judge.

Stored as a JSON string (``ConstraintSpec.model_dump_json()``) so parquet keeps one plain column
whatever the kwargs look like; ``ConstraintSpec.parse`` accepts that string, a dict, or a bare list
of constraints. A response satisfies its prompt only if it satisfies every constraint.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SPEC_VERSION = 1


class RuleConstraint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["rule"] = "rule"
    instruction_id: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("instruction_id")
    @classmethod
    def _known(cls, value: str) -> str:
        from rewards.constraints import known_instruction_ids

        if value not in known_instruction_ids():
            raise ValueError(f"unknown instruction id {value!r}")
        return value

    @field_validator("kwargs")
    @classmethod
    def _kwargs_fit(cls, value: dict[str, Any], info) -> dict[str, Any]:
        from rewards.constraints import validate_kwargs

        instruction_id = info.data.get("instruction_id")
        if instruction_id is not None:
            validate_kwargs(instruction_id, value)
        return value


class JudgeConstraint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["judge"] = "judge"
    text: str = Field(min_length=1)


Constraint = Annotated[RuleConstraint | JudgeConstraint, Field(discriminator="type")]


class ConstraintSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = SPEC_VERSION
    constraints: list[Constraint] = Field(default_factory=list)

    @property
    def rules(self) -> list[RuleConstraint]:
        return [c for c in self.constraints if isinstance(c, RuleConstraint)]

    @property
    def judged(self) -> list[JudgeConstraint]:
        return [c for c in self.constraints if isinstance(c, JudgeConstraint)]

    @classmethod
    def parse(cls, value: Any) -> ConstraintSpec:
        """From a JSON string, a dict, a list of constraints or an existing spec; ValueError if invalid."""
        if isinstance(value, cls):
            return value
        if isinstance(value, (bytes, str)):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise ValueError(f"constraint spec is not valid JSON: {err}") from err
        if isinstance(value, list):
            value = {"constraints": value}
        try:
            return cls.model_validate(value)
        except ValidationError as err:
            raise ValueError(f"invalid constraint spec: {err}") from err

    @classmethod
    def from_ifeval(cls, instruction_id_list: list[str], kwargs_list: list[dict[str, Any]]) -> ConstraintSpec:
        """An IFEval row (``instruction_id_list`` + ``kwargs``) as a spec; IFEval's null kwargs are dropped."""
        return cls(
            constraints=[
                RuleConstraint(instruction_id=i, kwargs={k: v for k, v in (kw or {}).items() if v is not None})
                for i, kw in zip(instruction_id_list, kwargs_list, strict=True)
            ]
        )

    def to_ground_truth(self) -> str:
        return self.model_dump_json()
