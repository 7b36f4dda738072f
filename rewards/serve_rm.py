"""A small real server for a Hugging Face sequence-classification reward model (CPU development).

    python -m rewards.serve_rm --model DIR [--port N] [--host 127.0.0.1] [--served-model-name NAME]

It speaks the wire formats the writing-RM client uses against vLLM and SGLang, so code tested
against it runs unchanged against them on a cluster:

- ``POST /classify``  (vLLM)  ``{"model", "input": str | [str], "use_activation": bool}``
  -> ``{"data": [{"index", "label", "probs": [score], "num_classes": 1}], "usage": {...}}``
- ``POST /pooling``   (vLLM)  -> ``{"data": [{"index", "object": "pooling", "data": [score]}]}``
- ``POST /v1/embeddings`` (SGLang) -> ``{"data": [{"index", "object": "embedding", "embedding": [score]}]}``
- ``GET /health``, ``GET /v1/models``, ``GET /stats`` (batches run, largest batch).

Once it listens it prints one line to stdout, ``rewards.serve_rm listening on http://HOST:PORT``,
with the port it actually bound (``--port 0``, the default, lets the OS pick one).
``recipe.rlmr.dev.servers.base.serve_in_subprocess(model_dir)`` starts it as a child process on port 0
and waits for that line (no port is probed and bound later, so no other process can take it in
between); the tests, ``make demo`` and the local launcher use it. This is a user-facing dev tool (the
RM ``make demo`` serves); the test doubles live in ``recipe.rlmr.dev.servers``.

The score is the model's raw last logit (``use_activation=false``, as verl asks for), or its
sigmoid. Texts from requests that arrive within ``--max-wait-ms`` of each other run as one
forward pass of up to ``--max-batch-size`` texts. Clusters serve real reward models with vLLM or
SGLang instead.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from aiohttp import web

logger = logging.getLogger("rewards.serve_rm")

READY_LINE = "rewards.serve_rm listening on "  # followed by http://HOST:PORT, the port actually bound


@dataclass
class BatchStats:
    requests: int = 0
    texts: int = 0
    batches: int = 0
    largest_batch: int = 0
    batch_sizes: list[int] = field(default_factory=list)


class BatchingScorer:
    """Collects texts from concurrent requests and scores them in batched forward passes."""

    def __init__(self, model, tokenizer, max_batch_size: int = 32, max_wait_ms: float = 5.0, max_length: int = 4096):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_batch_size, self.max_wait_s, self.max_length = max_batch_size, max_wait_ms / 1000.0, max_length
        self.stats = BatchStats()
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rm-forward")  # one forward at a time

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def score(self, texts: list[str]) -> list[float]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in texts]
        for text, future in zip(texts, futures, strict=True):
            self._queue.put_nowait((text, future))
        self.stats.requests += 1
        return list(await asyncio.gather(*futures))

    def _forward(self, texts: list[str]) -> list[float]:
        encoded = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            add_special_tokens=False,
        )
        with torch.inference_mode():
            logits = self.model(**encoded).logits  # [batch, num_labels]
        return logits[:, -1].float().tolist()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch_size:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            texts = [text for text, _ in batch]
            try:
                scores = await loop.run_in_executor(self._executor, self._forward, texts)
            except Exception as err:  # a bad batch fails its requests, not the server
                logger.exception("forward pass failed")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            self.stats.texts += len(batch)
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
            self.stats.batch_sizes.append(len(batch))
            for (_, future), value in zip(batch, scores, strict=True):
                if not future.done():
                    future.set_result(value)


def _error(status: int, message: str) -> web.Response:
    kind = "BadRequestError" if status == 400 else "NotFoundError" if status == 404 else "InternalServerError"
    return web.json_response({"error": {"message": message, "type": kind, "code": status}}, status=status)


def build_app(scorer: BatchingScorer, served_model_name: str) -> web.Application:
    async def read_inputs(request: web.Request) -> tuple[list[str], dict] | web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not valid JSON")
        if not isinstance(body, dict) or "input" not in body:
            return _error(400, "request body must be an object with an 'input' field")
        model = body.get("model")
        if model is not None and model != served_model_name:
            return _error(404, f"The model `{model}` does not exist.")
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if not texts or not all(isinstance(t, str) for t in texts):
            return _error(400, "'input' must be a non-empty string or list of strings")
        return texts, body

    async def scored(request: web.Request):
        parsed = await read_inputs(request)
        if isinstance(parsed, web.Response):
            return parsed, None, None
        texts, body = parsed
        try:
            scores = await scorer.score(texts)
        except Exception as err:
            return _error(500, f"scoring failed: {err}"), None, None
        if body.get("use_activation"):
            scores = torch.sigmoid(torch.tensor(scores)).tolist()
        return None, texts, scores

    def usage(texts: list[str]) -> dict:
        tokens = sum(len(scorer.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        return {"prompt_tokens": tokens, "total_tokens": tokens}

    def endpoint(row):
        """A POST handler answering ``{"data": [row(index, score), ...]}`` in one wire format."""

        async def handle(request: web.Request) -> web.Response:
            error, texts, scores = await scored(request)
            if error is not None:
                return error
            data = [row(i, score) for i, score in enumerate(scores)]
            return web.json_response(
                {"object": "list", "model": served_model_name, "data": data, "usage": usage(texts)}
            )

        return handle

    classify = endpoint(lambda i, s: {"index": i, "label": "LABEL_0", "probs": [s], "num_classes": 1})  # vLLM
    pooling = endpoint(lambda i, s: {"index": i, "object": "pooling", "data": [s]})  # vLLM
    embeddings = endpoint(lambda i, s: {"index": i, "object": "embedding", "embedding": [s]})  # SGLang

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": served_model_name, "object": "model"}]})

    async def stats(_: web.Request) -> web.Response:
        s = scorer.stats
        return web.json_response(
            {"requests": s.requests, "texts": s.texts, "batches": s.batches, "largest_batch": s.largest_batch}
        )

    async def on_startup(_: web.Application) -> None:
        await scorer.start()

    async def on_cleanup(_: web.Application) -> None:
        await scorer.stop()

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.add_routes(
        [
            web.post("/classify", classify),
            web.post("/pooling", pooling),
            web.post("/v1/embeddings", embeddings),
            web.get("/health", health),
            web.get("/v1/models", models),
            web.get("/stats", stats),
        ]
    )
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def load_scorer(
    model_dir: str, max_batch_size: int, max_wait_ms: float, max_length: int, threads: int = 0
) -> BatchingScorer:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return BatchingScorer(model, tokenizer, max_batch_size, max_wait_ms, max_length)


async def _serve(app: web.Application, host: str, port: int) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, announcing the bound port once it listens."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        print(f"{READY_LINE}http://{host}:{bound}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="local directory of a sequence-classification model")
    parser.add_argument("--port", type=int, default=0, help="0: a free port chosen by the OS (announced on stdout)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--served-model-name", default=None, help="name clients send as 'model' (default: --model)")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-length", type=int, default=4096, help="tokens per input; longer inputs are truncated")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    scorer = load_scorer(args.model, args.max_batch_size, args.max_wait_ms, args.max_length, args.threads)
    asyncio.run(_serve(build_app(scorer, args.served_model_name or args.model), args.host, args.port))


if __name__ == "__main__":
    main()
