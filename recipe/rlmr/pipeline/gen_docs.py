"""``docs/pipeline_presets.md``: every field of the pipeline's presets, generated (``make docs``).

    python -m recipe.rlmr.pipeline.gen_docs [--check]

One row per ``Preset`` field (``recipe/rlmr/pipeline/presets.py``): its type, its value in ``quick``
and in ``full``, and the description declared with it. ``--check`` exits 1 when the committed page
differs (a test runs it).
"""

from __future__ import annotations

import sys
from dataclasses import fields

from recipe.rlmr.dev.gen_docs import GENERATED, main
from recipe.rlmr.pipeline.presets import PRESETS

PAGE = "docs/pipeline_presets.md"


def _value(value) -> str:
    if isinstance(value, tuple):
        return "`" + ",".join(value) + "`"
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def presets_page() -> str:
    quick, full = PRESETS["quick"], PRESETS["full"]
    rows = [
        f"| `{f.name}` | {f.type} | {_value(getattr(quick, f.name))} | {_value(getattr(full, f.name))} "
        f"| {f.metadata['doc']} |"
        for f in fields(quick)
        if f.name != "name"
    ]
    lines = [
        GENERATED.replace("recipe/rlmr/dev/gen_docs.py", "recipe/rlmr/pipeline/gen_docs.py"),
        "# Pipeline presets: every field of `python -m recipe.rlmr.pipeline`",
        "",
        "`--quick` takes the quick column, no flag the full one; `--set FIELD=VALUE` overrides any field "
        "(tuples comma-separated), and a work directory refuses a later run whose preset differs "
        "(docs/pipeline.md).",
        "",
        "| field | type | quick | full | description |",
        "|---|---|---|---|---|",
        *rows,
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(pages={PAGE: presets_page}))
