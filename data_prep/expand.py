"""`expand`: self-instruct generation of constrained creative-writing prompts through a served LLM.

The loop (the paper expands its seed prompts this way; the method is self-instruct's):

1. sample ``demos`` demonstrations: seeds, and as the pool grows up to half of them earlier
   generated prompts (a bounded reservoir of them, so memory stays flat);
2. ask the model, through the chat client (``rewards.chat``: ``base_url`` is the server root, a
   ``/v1`` suffix accepted), for one new task with its
   constraints, as the JSON object described in ``REQUEST_PROMPT`` (the one place the request
   is worded);
3. validate the answer (``validate_candidate``): parseable, a non-empty prompt within the token
   limit, every constraint in the project's spec (the same parser as ``convert``), kwargs of the
   right types, each constraint stated in the prompt or a sentence appended for it;
4. drop exact and near copies of the seeds and of everything kept so far (``NearDuplicateIndex``);
5. append what survives to the output, everything else to the rejects file with its reason.

Requests run ``concurrency`` at a time, each attempt time-boxed and retried with backoff on
timeouts, connection errors, 429 and 5xx (``rewards.chat.ChatClient``). A request that fails for
good is counted, not retried forever: ``max_failures`` of them stop the run. Output and rejects are
journals (``.NAME.partial`` beside the final file, one flushed line per candidate) renamed into place
when the run completes; a rerun resumes from the journal (or from a finished output, to raise
``target``). Candidates in flight when the target is reached are cancelled, so the output holds
exactly ``target`` prompts and every answer received is either kept or rejected with a reason.

The output is ``convert``'s generic shape (``prompt`` string, ``constraints`` list, ``data_source``)
plus ``genre`` and ``origin``, which ``convert`` ignores.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_prep.augment import row_rng
from data_prep.dedup import NearDuplicateIndex
from data_prep.phrasing import RELATIONS, ensure_stated
from data_prep.shapes import FieldMap, Rejected, parse_record
from rewards.constraints import KWARG_TYPES, check_kwarg_types
from rewards.readers import InputError, read_rows
from rewards.spec import JudgeConstraint, RuleConstraint

# The request sent to the model for every candidate. {examples}, {count} and {catalog} are filled in
# by ``build_request``; everything else is literal. Change the wording here and only here.
REQUEST_PROMPT = """\
You design writing tasks for training a creative-writing assistant. A task asks for one piece of \
creative writing (a poem, a story, a letter, a speech, a scene, song lyrics, a fable, a diary entry, \
an essay, ...) and sets constraints the writer must obey.

Here are {count} example tasks, one JSON object each:

{examples}

Write ONE new task. Make it different from the examples in topic, genre and constraints, and make it \
something a skilled writer could do well. State every constraint in the prompt text itself, in \
natural words, and also list each one under "constraints" in one of these two forms:

- {{"type": "rule", "instruction_id": ID, "kwargs": {{...}}}} for a constraint a program can check. \
ID and its kwargs must come from this list (use exactly these kwarg names and value types):
{catalog}
- {{"type": "judge", "text": "..."}} for a constraint a careful reader has to judge (point of view, \
tone, form, content), stated as a short sentence.

Use 1 to 4 constraints, at least one of them a rule. Name the genre in one or two words.
Answer with a single JSON object and nothing else:
{{"prompt": "...", "genre": "...", "constraints": [...]}}"""

_NOTES = {
    "relation": f"one of {' or '.join(repr(r) for r in RELATIONS)}",
    "let_relation": f"one of {' or '.join(repr(r) for r in RELATIONS)}",
    "capital_relation": f"one of {' or '.join(repr(r) for r in RELATIONS)}",
    "language": 'an ISO 639-1 code such as "fr"',
    "letter": "a single letter",
}
_BOUNDS_NOTE = {
    "rlmr:word_range": "at least one of the two",
    "rlmr:char_range": "at least one of min_chars/max_chars",
    "rlmr:line_count": "at least one of the two",
    "rlmr:stanza_count": "at least one of the two",
    "rlmr:title": "title is optional",
}
REJECT_REASONS = (
    "malformed",
    "empty_prompt",
    "too_long",
    "no_constraints",
    "bad_constraints",
    "unknown_instruction_id",
    "bad_kwargs",
    "duplicate",
    "near_duplicate",
)


def instruction_catalog() -> str:
    """One line per known instruction id: its kwargs with their types (what the model may use)."""
    from rewards.constraints import instruction_kwarg_names, known_instruction_ids

    lines = []
    for iid in sorted(known_instruction_ids()):
        names = instruction_kwarg_names(iid)
        parts = [f"{n} ({_NOTES.get(n, KWARG_TYPES[n])})" for n in names]
        note = f"; {_BOUNDS_NOTE[iid]}" if iid in _BOUNDS_NOTE else ""
        lines.append(f"  - {iid}: " + (", ".join(parts) if parts else "no kwargs, {}") + note)
    return "\n".join(lines)


@dataclass
class Demo:
    label: str  # "seeds.jsonl row 3" / "expanded.jsonl row 12"
    text: str  # the JSON object shown to the model


def demo_json(prompt: str, constraints: list[dict[str, Any]], genre: str | None = None) -> str:
    record: dict[str, Any] = {"prompt": prompt}
    if genre:
        record["genre"] = genre
    record["constraints"] = constraints
    return json.dumps(record, ensure_ascii=False)


def build_request(demos: list[Demo], catalog: str) -> str:
    examples = "\n".join(demo.text for demo in demos)
    return REQUEST_PROMPT.format(count=len(demos), examples=examples, catalog=catalog)


# --- validation ------------------------------------------------------------------------------


class CandidateRejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


_FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\n(.*?)\n?```", re.DOTALL)
_APPROX_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """Without a tokenizer: words, punctuation marks and CJK characters, one token each."""
    return len(_APPROX_TOKEN.findall(text))


def parse_answer(content: str) -> dict[str, Any]:
    """The JSON object in a model answer: the whole answer, or the one ```json fenced block."""
    text = content.strip()
    fences = _FENCE.findall(text)
    if len(fences) > 1:
        raise CandidateRejected("malformed", f"{len(fences)} fenced blocks, expected one JSON object")
    if fences:
        text = fences[0].strip()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise CandidateRejected("malformed", f"not JSON ({err.msg} at line {err.lineno} column {err.colno})") from err
    if not isinstance(value, dict):
        raise CandidateRejected("malformed", f"expected a JSON object, got {type(value).__name__}")
    return value


@dataclass
class Candidate:
    prompt: str  # with appended phrasing
    constraints: list[RuleConstraint | JudgeConstraint]
    genre: str
    appended: list[int]  # indices of constraints whose phrasing was appended


def normalise_genre(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        return "unspecified"
    return re.sub(r"\s+", " ", value.strip().casefold())[:40]


def validate_candidate(
    value: dict[str, Any], count_tokens: Callable[[str], int], max_prompt_tokens: int, min_constraints: int
) -> Candidate:
    """A parsed answer -> a usable candidate, or CandidateRejected with its reason."""
    prompt, constraints = value.get("prompt"), value.get("constraints")
    if not isinstance(prompt, str):
        raise CandidateRejected("malformed", f"'prompt' must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise CandidateRejected("empty_prompt", "'prompt' is empty")
    if not isinstance(constraints, list):
        raise CandidateRejected("malformed", f"'constraints' must be a list, got {type(constraints).__name__}")
    try:  # exactly the parser `convert` applies to the output later
        parsed = parse_record({"prompt": prompt, "constraints": constraints}, "generic", FieldMap())
    except Rejected as err:
        raise CandidateRejected(err.reason, err.detail) from err
    items = parsed.spec.constraints
    for item in items:
        if isinstance(item, RuleConstraint):
            try:
                check_kwarg_types(item.instruction_id, item.kwargs)
            except ValueError as err:
                raise CandidateRejected("bad_kwargs", str(err)) from err
    if len(items) < min_constraints:
        raise CandidateRejected("no_constraints", f"{len(items)} constraints, at least {min_constraints} required")
    final, appended = ensure_stated(prompt.strip(), items)
    tokens = count_tokens(final)
    if tokens > max_prompt_tokens:
        raise CandidateRejected("too_long", f"{tokens} prompt tokens > --max-prompt-tokens {max_prompt_tokens}")
    return Candidate(final, items, normalise_genre(value.get("genre")), appended)


# --- journals (atomic outputs that survive an interruption) ----------------------------------


class Journal:
    """Lines appended to ``.NAME.partial`` and flushed one by one; ``publish`` renames it to NAME.

    Opening resumes: from the journal of an interrupted run (a torn last line is cut off), else
    from the finished file (its lines are copied into a new journal), else empty.
    """

    def __init__(self, path: Path):
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.resumed_from: Path | None = None
        if self.partial.exists():
            self.resumed_from = self.partial
            _cut_torn_line(self.partial)
        elif path.exists():
            self.resumed_from = path
            shutil.copyfile(path, self.partial)
            _cut_torn_line(self.partial)
        self.handle = open(self.partial, "a", encoding="utf-8")

    def records(self) -> list[tuple[int, dict[str, Any]]]:
        """The lines already there, as (line number, object); a bad line is an error naming it."""
        out = []
        with open(self.partial, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise InputError(
                        f"{self.resumed_from}: row {number}: not JSON ({err.msg}); fix or remove it"
                    ) from err
                out.append((number, record))
        return out

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()

    def publish(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.partial, self.path)

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.flush()
            self.handle.close()


def _cut_torn_line(path: Path) -> None:
    with open(path, "rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


# --- the run ---------------------------------------------------------------------------------


@dataclass
class ExpandOptions:
    seeds: list[str]
    base_url: str
    model: str
    target: int
    output: str
    rejects: str | None = None
    demos: int = 4
    concurrency: int = 16
    similarity: float = 0.7
    seed: int = 0
    temperature: float = 1.0
    max_tokens: int = 1024  # per answer
    timeout_s: float = 120.0
    max_retries: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    max_prompt_tokens: int = 1024
    tokenizer: str | None = None
    min_constraints: int = 1
    max_requests: int | None = None  # default: 10 * target + 100
    max_failures: int = 20  # requests failed for good (after retries) before the run stops
    data_source: str = "rlmr_expand"
    api_key: str | None = None
    progress: bool = True
    reservoir: int = 10_000  # generated prompts kept as possible demonstrations


@dataclass
class Summary:
    target: int = 0
    resumed: int = 0  # prompts already in the output when the run started
    kept: int = 0  # kept by this run
    rejected: Counter = field(default_factory=Counter)
    requests: int = 0
    attempts: int = 0
    answered: int = 0
    failed: int = 0
    cancelled: int = 0
    appended_phrasing: int = 0
    constraint_count: int = 0
    constraint_types: Counter = field(default_factory=Counter)  # over the whole output
    genres: Counter = field(default_factory=Counter)  # over the whole output
    stop_reason: str = ""
    last_error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def candidates(self) -> int:
        return self.answered

    @property
    def total(self) -> int:
        return self.resumed + self.kept

    @property
    def reached(self) -> bool:
        return self.total >= self.target

    def render(self) -> str:
        rejected = sum(self.rejected.values())
        lines = [
            f"expand: {self.total}/{self.target} prompts ({self.stop_reason})"
            + (f", {self.resumed} of them from an earlier run" if self.resumed else ""),
            f"candidates {self.candidates}: kept {self.kept}, rejected {rejected}" + (":" if rejected else ""),
        ]
        lines += [f"  {reason:<24} {count}" for reason, count in self.rejected.most_common()]
        lines.append(
            f"requests {self.requests} ({self.attempts} HTTP attempts): answered {self.answered}, "
            f"failed after retries {self.failed}, cancelled in flight at the stop {self.cancelled}"
        )
        if self.last_error:
            lines.append(f"last request error: {self.last_error}")
        lines.append(f"phrasing appended for {self.appended_phrasing} of {self.constraint_count} kept constraints")
        lines.append("constraint types: " + _histogram(self.constraint_types))
        lines.append("genres: " + _histogram(self.genres))
        lines += [f"wrote {path}" for path in self.outputs.values()]
        return "\n".join(lines)


def _histogram(counter: Counter, top: int = 15) -> str:
    items = counter.most_common()
    text = ", ".join(f"{k} {v}" for k, v in items[:top])
    if len(items) > top:
        text += f", ... ({len(items) - top} more, {sum(v for _, v in items[top:])} in all)"
    return text or "-"


def _constraint_type(item: dict[str, Any]) -> str:
    return item.get("instruction_id", "?") if item.get("type") == "rule" else "judge"


RESUME_HINT = "the prompts kept so far stay in the journal (.OUTPUT.partial); rerun the same command to resume"


class ServerFailure(RuntimeError):
    """The server failed too many requests, or refused one outright (a 4xx: the request is wrong)."""


class _Run:
    def __init__(self, options: ExpandOptions):
        o = self.options = options
        if o.target < 1:
            raise ValueError(f"--target must be at least 1, got {o.target}")
        if o.demos < 1:
            raise ValueError(f"--demos must be at least 1, got {o.demos}")
        if o.concurrency < 1:
            raise ValueError(f"--concurrency must be at least 1, got {o.concurrency}")
        self.summary = Summary(target=o.target)
        self.index = NearDuplicateIndex(o.similarity)
        self.catalog = instruction_catalog()
        self.seed_demos: list[Demo] = []
        self.generated_demos: list[Demo] = []
        self.reservoir_rng = random.Random(o.seed)
        self.generated_seen = 0
        self.count_tokens = self._token_counter()
        self._load_seeds()
        out = Path(o.output)
        self.output = Journal(out)
        self.rejects = Journal(Path(o.rejects) if o.rejects else out.with_name(f"{out.stem}.rejects.jsonl"))
        try:
            self._load_output()
        except BaseException:
            self.output.close()
            self.rejects.close()
            for journal in (self.output, self.rejects):  # a copy of a finished file: nothing lost
                if journal.resumed_from == journal.path:
                    journal.partial.unlink(missing_ok=True)
            raise
        self.bar: tqdm | None = None
        self.workers: list[asyncio.Task] = []

    def _token_counter(self) -> Callable[[str], int]:
        if self.options.tokenizer is None:
            return approx_tokens
        from data_prep.convert import _token_counter

        count = _token_counter(self.options.tokenizer)
        return lambda text: count([{"role": "user", "content": text}])

    def _load_seeds(self) -> None:
        for path in self.options.seeds:
            for row in read_rows(path):
                where = f"{row.source} row {row.row}"
                if row.error is not None:
                    raise InputError(f"{where}: {row.error}")
                try:
                    parsed = parse_record(row.record, "auto", FieldMap())
                except Rejected as err:
                    raise InputError(f"{where}: {err.reason}: {err.detail}") from err
                prompt = next(m["content"] for m in reversed(parsed.messages) if m["role"] == "user")
                constraints = [c.model_dump() for c in parsed.spec.constraints]
                genre = row.record.get("genre") if isinstance(row.record.get("genre"), str) else None
                self.index.add(prompt, where)
                self.seed_demos.append(Demo(where, demo_json(prompt, constraints, genre)))
        if not self.seed_demos:
            raise InputError(f"{', '.join(self.options.seeds)}: no seed prompts")

    def _remember(self, demo: Demo) -> None:
        """Reservoir sampling: every generated prompt has the same chance to be a demonstration."""
        self.generated_seen += 1
        if len(self.generated_demos) < self.options.reservoir:
            self.generated_demos.append(demo)
        else:
            slot = self.reservoir_rng.randrange(self.generated_seen)
            if slot < self.options.reservoir:
                self.generated_demos[slot] = demo

    def _count_output(self, record: dict[str, Any]) -> None:
        self.summary.constraint_types.update(_constraint_type(c) for c in record["constraints"])
        self.summary.genres[record.get("genre") or "unspecified"] += 1

    def _load_output(self) -> None:
        name = self.output.path.name
        for number, record in self.output.records():
            prompt = record.get("prompt")
            if not isinstance(prompt, str) or not isinstance(record.get("constraints"), list):
                where = f"{self.output.resumed_from}: row {number}"
                raise InputError(f"{where}: not an expand record (a prompt string and a constraints list)")
            label = f"{name} row {number}"
            self.index.add(prompt, label)
            self._remember(Demo(label, demo_json(prompt, record["constraints"], record.get("genre"))))
            self._count_output(record)
            self.summary.resumed += 1

    def sample_demos(self, request: int) -> list[Demo]:
        rng = row_rng(self.options.seed, request, "expand")
        k = self.options.demos
        from_generated = min(len(self.generated_demos), k // 2)
        from_seeds = min(len(self.seed_demos), k - from_generated)
        from_generated = min(len(self.generated_demos), k - from_seeds)
        demos = rng.sample(self.seed_demos, from_seeds) + rng.sample(self.generated_demos, from_generated)
        rng.shuffle(demos)
        return demos

    def payload(self, demos: list[Demo]) -> dict[str, Any]:
        return {
            "model": self.options.model,
            "messages": [{"role": "user", "content": build_request(demos, self.catalog)}],
            "temperature": self.options.temperature,
            "max_tokens": self.options.max_tokens,
        }

    # -- per candidate (synchronous: runs between awaits, so no two interleave) --

    def reject(self, request: int, reason: str, detail: str, content: str, **extra: Any) -> None:
        self.summary.rejected[reason] += 1
        record = {"request": request, "reason": reason, "detail": detail, **extra, "answer": content[:4000]}
        self.rejects.write(record)

    def process(self, request: int, content: str, demos: list[Demo]) -> None:
        self.summary.answered += 1
        try:
            candidate = validate_candidate(
                parse_answer(content),
                self.count_tokens,
                self.options.max_prompt_tokens,
                self.options.min_constraints,
            )
        except CandidateRejected as err:
            return self.reject(request, err.reason, err.detail, content)
        label = f"{self.output.path.name} row {self.summary.total + 1}"
        match = self.index.check_and_add(candidate.prompt, label)
        if match is not None:
            detail = f"similarity {match.similarity} with {match.label}"
            return self.reject(request, match.reason, detail, content, similar_to=match.label)
        constraints = [c.model_dump() for c in candidate.constraints]
        record = {
            "prompt": candidate.prompt,
            "constraints": constraints,
            "genre": candidate.genre,
            "data_source": self.options.data_source,
            "origin": {"request": request, "demos": [d.label for d in demos], "appended": candidate.appended},
        }
        self.output.write(record)
        self.summary.kept += 1
        self.summary.appended_phrasing += len(candidate.appended)
        self.summary.constraint_count += len(constraints)
        self._count_output(record)
        self._remember(Demo(label, demo_json(candidate.prompt, constraints, candidate.genre)))
        if self.bar is not None:
            self.bar.update(1)

    # -- the request loop --

    async def worker(self, client) -> None:
        from rewards.http import HTTPCallError, RetryableError

        summary, options = self.summary, self.options
        max_requests = options.max_requests or 10 * options.target + 100
        while not summary.reached and summary.requests < max_requests:
            request = summary.requests
            summary.requests += 1
            demos = self.sample_demos(request)
            payload = self.payload(demos)

            def attempted() -> None:
                summary.attempts += 1

            try:
                content, _ = await client.complete(
                    payload["messages"],
                    on_attempt=attempted,
                    temperature=payload["temperature"],
                    max_tokens=payload["max_tokens"],
                )
            except RetryableError as err:
                summary.failed += 1
                summary.last_error = str(err)
                if summary.failed >= options.max_failures:
                    self._stop_others()
                    raise ServerFailure(
                        f"{options.base_url}: {summary.failed} requests failed after {options.max_retries} "
                        f"retries each (--max-failures {options.max_failures}); last: {err}"
                    ) from err
                continue
            except HTTPCallError as err:  # a 4xx: every request would fail the same way
                self._stop_others()
                raise ServerFailure(f"{options.base_url}: the server refused the request: {err}") from err
            if summary.reached:  # another worker reached the target while this answer was on its way
                summary.cancelled += 1
                return
            self.process(request, content, demos)
        if summary.reached:  # answers still on their way are not needed: cancel them (the budget lets them land)
            self._stop_others()

    def _stop_others(self) -> None:
        current = asyncio.current_task()
        for task in self.workers:
            if task is not current and not task.done():
                task.cancel()

    async def run(self) -> None:
        from rewards.chat import ChatClient
        from rewards.config import BackendConfig

        o = self.options
        settings = BackendConfig(
            url=o.base_url,
            model=o.model,
            timeout_s=o.timeout_s,
            max_concurrency=o.concurrency,
            max_retries=o.max_retries,
            backoff_s=o.backoff_s,
            backoff_max_s=o.backoff_max_s,
        )
        api_key = o.api_key or os.environ.get("OPENAI_API_KEY")
        client = ChatClient(settings, api_key)
        try:
            self.workers = [asyncio.create_task(self.worker(client)) for _ in range(o.concurrency)]
            results = await asyncio.gather(*self.workers, return_exceptions=True)
        finally:
            await client.close()
        cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
        self.summary.cancelled += cancelled
        errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
        if errors:
            raise errors[0]


def expand(options: ExpandOptions) -> Summary:
    """Run to the target (or the request budget); publish output and rejects; return the summary.

    On a server failure or an interruption the journals stay beside the outputs and the
    exception propagates: rerunning the same command resumes.
    """
    run = _Run(options)
    summary = run.summary
    try:
        if not summary.reached:
            with tqdm(
                total=options.target,
                initial=summary.resumed,
                unit="prompt",
                desc="expand",
                disable=not options.progress,
                mininterval=1.0,
            ) as run.bar:
                asyncio.run(run.run())
        summary.stop_reason = "target reached" if summary.reached else "request budget spent (--max-requests)"
        run.output.publish()
        run.rejects.publish()
        summary.outputs = {"output": str(run.output.path), "rejects": str(run.rejects.path)}
        return summary
    except BaseException:
        summary.stop_reason = "stopped"
        raise
    finally:
        run.output.close()
        run.rejects.close()
