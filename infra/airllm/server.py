"""The ZaaS AirLLM sidecar: one model behind an OpenAI-compatible chat-completions API.

AirLLM (`airllm.AutoModel`) runs a model larger than memory by streaming one transformer layer
at a time from per-layer shards on disk. This service wraps it so that a data-plane node calls it
like any other backend of the catalog (`POST /v1/chat/completions`, whole or streamed), and adds
what an operator needs around it:

* `GET /health`: whether the model is loaded, the engine, the device, the layers.
* `GET /metrics`: Prometheus text. Resident and peak memory of the process, device memory where
  there is a device, per-layer load time, tokens per second, time to first token, requests in
  flight and queued, and the memory limit the node compares the resident memory with.
* One generation at a time; at most `ZAAS_AIRLLM_MAX_QUEUE` more wait. Beyond that a request gets
  429 with `Retry-After`, which a node treats as "busy", not "broken".

Settings are environment variables (docs/airllm.md lists them all). `ZAAS_AIRLLM_ENGINE=standard`
serves the same model with plain transformers, all layers in memory: the fallback where AirLLM is
not installed (`auto`, the default, picks it then), and the baseline of the benchmark.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

log = logging.getLogger("zaas.airllm")


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"{name} must be true or false, not {value!r}")


def _int(name: str, default: int, low: int, high: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {value!r}") from None
    if not low <= number <= high:
        raise SystemExit(f"{name} must be from {low} to {high}, not {number}")
    return number


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = os.environ.get(name) or default
    if value not in allowed:
        raise SystemExit(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _machine_memory_bytes() -> int:
    """The memory this process may use: the cgroup's limit when there is one, else the machine's."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass(frozen=True)
class Settings:
    model_path: str
    model_name: str
    host: str
    port: int
    engine: str
    device: str
    dtype: str
    compression: str | None
    prefetching: bool
    shards_dir: str | None
    max_queue: int
    max_prompt_tokens: int
    max_new_tokens: int
    threads: int
    memory_limit_bytes: int

    @staticmethod
    def from_environment() -> "Settings":
        model_path = os.environ.get("ZAAS_AIRLLM_MODEL_PATH")
        if not model_path:
            raise SystemExit("ZAAS_AIRLLM_MODEL_PATH must name a model folder (config.json, weights, tokenizer)")
        if not Path(model_path, "config.json").is_file():
            raise SystemExit(f"{model_path} holds no config.json: not a model folder")
        compression = _choice("ZAAS_AIRLLM_COMPRESSION", "none", ("none", "4bit", "8bit"))
        limit_mb = _int("ZAAS_AIRLLM_MEMORY_LIMIT_MB", 0, 0, 1 << 30)
        return Settings(
            model_path=model_path,
            model_name=os.environ.get("ZAAS_AIRLLM_MODEL_NAME") or Path(model_path).name,
            host=os.environ.get("ZAAS_AIRLLM_HOST") or "127.0.0.1",
            port=_int("ZAAS_AIRLLM_PORT", 8095, 1, 65535),
            engine=_choice("ZAAS_AIRLLM_ENGINE", "auto", ("auto", "airllm", "standard")),
            device=os.environ.get("ZAAS_AIRLLM_DEVICE") or ("cuda:0" if torch.cuda.is_available() else "cpu"),
            dtype=_choice("ZAAS_AIRLLM_DTYPE", "auto", ("auto", "float32", "bfloat16", "float16")),
            compression=None if compression == "none" else compression,
            prefetching=_flag("ZAAS_AIRLLM_PREFETCH", True),
            shards_dir=os.environ.get("ZAAS_AIRLLM_SHARDS_DIR") or None,
            max_queue=_int("ZAAS_AIRLLM_MAX_QUEUE", 4, 0, 1024),
            max_prompt_tokens=_int("ZAAS_AIRLLM_MAX_PROMPT_TOKENS", 512, 8, 1 << 20),
            max_new_tokens=_int("ZAAS_AIRLLM_MAX_NEW_TOKENS", 512, 1, 1 << 16),
            threads=_int("ZAAS_AIRLLM_THREADS", 0, 0, 1024),
            # 90 % of what the process may use, unless set: past it the node stops sending.
            memory_limit_bytes=limit_mb * 1024 * 1024 or int(_machine_memory_bytes() * 0.9),
        )


class Metrics:
    """What `/metrics` shows, in a registry of its own (no default process collectors: the ones
    below read the same figures and say what they mean for this service)."""

    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.resident = Gauge("airllm_process_resident_bytes", "Resident memory of the sidecar process.", registry=r)
        self.peak = Gauge("airllm_process_peak_resident_bytes", "Peak resident memory of the process since it started.", registry=r)
        self.limit = Gauge(
            "airllm_memory_limit_bytes",
            "Resident memory beyond which nodes stop sending requests (ZAAS_AIRLLM_MEMORY_LIMIT_MB).",
            registry=r)
        self.limit.set(settings.memory_limit_bytes)
        self.device_allocated = Gauge("airllm_device_memory_bytes", "Device memory allocated by tensors.", ["device"], registry=r)
        self.device_peak = Gauge("airllm_device_peak_memory_bytes", "Peak device memory allocated by tensors.", ["device"], registry=r)
        self.loaded = Gauge("airllm_model_loaded", "1 once the model is loaded and serving.", registry=r)
        self.layers = Gauge("airllm_model_layers", "Modules streamed one at a time (embedding, decoder layers, norm, head).", registry=r)
        self.layer_load = Histogram(
            "airllm_layer_load_seconds", "Time to read one layer's shard from disk.", ["layer"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.first_token = Histogram(
            "airllm_time_to_first_token_seconds", "From the start of a generation to its first token.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=r)
        self.generation = Histogram(
            "airllm_generation_seconds", "Whole generations, first token to last included.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600), registry=r)
        self.tokens = Counter("airllm_generated_tokens", "Tokens generated.", registry=r)
        self.prompt_tokens = Counter("airllm_prompt_tokens", "Prompt tokens read.", registry=r)
        self.tokens_per_second = Gauge("airllm_tokens_per_second", "Generated tokens per second of the last generation.", registry=r)
        self.in_flight = Gauge("airllm_requests_in_flight", "Generations running (at most one).", registry=r)
        self.queued = Gauge("airllm_requests_queued", "Requests waiting for the model.", registry=r)
        self.requests = Counter("airllm_requests", "Chat-completion requests by outcome.", ["outcome"], registry=r)
        self.device = settings.device

    def refresh(self) -> None:
        """Reads memory figures now (on each scrape)."""
        status = {}
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                key, _, value = line.partition(":")
                status[key] = value.strip()
        except OSError:
            pass
        for key, gauge in (("VmRSS", self.resident), ("VmHWM", self.peak)):
            if key in status:
                gauge.set(int(status[key].split()[0]) * 1024)
        if self.device.startswith("cuda") and torch.cuda.is_available():
            device = torch.device(self.device)
            self.device_allocated.labels(self.device).set(torch.cuda.memory_allocated(device))
            self.device_peak.labels(self.device).set(torch.cuda.max_memory_allocated(device))
        elif self.device == "mps" and hasattr(torch, "mps"):
            self.device_allocated.labels(self.device).set(torch.mps.current_allocated_memory())


class Cancelled(StoppingCriteria):
    """Stops a generation whose caller has left."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> bool:  # noqa: ANN001
        return self.event.is_set()


class Engine:
    """The model and its tokenizer, one generation at a time on a worker thread of its own."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.engine = settings.engine
        self.layers = 0
        self.lock = threading.Lock()
        if settings.threads:
            torch.set_num_threads(settings.threads)
        if self.engine == "auto":
            try:
                import airllm  # noqa: F401

                self.engine = "airllm"
            except ImportError as error:
                log.warning("airllm cannot be imported (%s): serving with standard inference", error)
                self.engine = "standard"
        dtype = None if settings.dtype == "auto" else getattr(torch, settings.dtype)
        if dtype is None and settings.device == "cpu":
            # Half precision on a processor is emulated and slow; single precision is exact.
            dtype = torch.float32
        started = time.monotonic()
        if self.engine == "airllm":
            from airllm import AutoModel

            self.model = AutoModel.from_pretrained(
                settings.model_path, device=settings.device, dtype=dtype, compression=settings.compression,
                prefetching=settings.prefetching, layer_shards_saving_path=settings.shards_dir,
                max_seq_len=settings.max_prompt_tokens + settings.max_new_tokens)
            self.tokenizer = self.model.tokenizer
            self.layers = len(self.model.layer_names)
            self._time_layer_loads()
            self.generator = self.model.model
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(settings.model_path)
            self.generator = AutoModelForCausalLM.from_pretrained(settings.model_path, dtype=dtype or "auto")
            self.generator.to(settings.device)
            self.generator.eval()
            self.layers = self.generator.config.num_hidden_layers + 3
        self.tokenizer.truncation_side = "left"
        metrics.layers.set(self.layers)
        metrics.loaded.set(1)
        log.info(
            "model %s loaded in %.1f s: engine %s, device %s, %d layers", settings.model_name,
            time.monotonic() - started, self.engine, settings.device, self.layers)

    def _time_layer_loads(self) -> None:
        """Times each shard read: AirLLM reads a layer through `load_layer_to_cpu`, prefetched on
        its own thread or not."""
        load = self.model.load_layer_to_cpu
        histogram = self.metrics.layer_load

        def timed(layer_name: str):  # noqa: ANN202
            started = time.perf_counter()
            try:
                return load(layer_name)
            finally:
                histogram.labels(layer_name).observe(time.perf_counter() - started)

        self.model.load_layer_to_cpu = timed

    def encode(self, messages: list[dict[str, str]]) -> torch.Tensor:
        """The chat template applied, keeping the last `max_prompt_tokens` tokens (the question
        comes last; a model that reads fewer sees the end of the passages and the question)."""
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        ids = list(ids)[-self.settings.max_prompt_tokens:]
        return torch.tensor([ids], dtype=torch.long, device=self.settings.device)

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, temperature: float,
                 chunks: "queue.Queue[Any]", cancelled: threading.Event) -> None:
        """Runs on the worker thread: puts each piece of text on `chunks`, then a final
        `("done", completion_tokens, finish_reason)` or `("error", message)`."""
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "max_new_tokens": max_new_tokens,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([Cancelled(cancelled)]),
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        }
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                with torch.inference_mode():
                    result["output"] = self.generator.generate(**kwargs)
            except BaseException as error:  # noqa: BLE001 - reported to the caller
                result["error"] = error
                streamer.end()

        started = time.monotonic()
        first: float | None = None
        with self.lock:
            self.metrics.in_flight.set(1)
            try:
                thread = threading.Thread(target=run, name="generate", daemon=True)
                thread.start()
                for text in streamer:
                    if not text:
                        continue
                    if first is None:
                        first = time.monotonic()
                        self.metrics.first_token.observe(first - started)
                    chunks.put(("text", text))
                thread.join()
            finally:
                self.metrics.in_flight.set(0)
        if "error" in result:
            chunks.put(("error", f"{type(result['error']).__name__}: {result['error']}"))
            return
        output = result["output"]
        generated = int(output.shape[-1] - input_ids.shape[-1])
        elapsed = time.monotonic() - started
        self.metrics.generation.observe(elapsed)
        self.metrics.tokens.inc(generated)
        self.metrics.prompt_tokens.inc(int(input_ids.shape[-1]))
        if elapsed > 0 and generated > 0:
            self.metrics.tokens_per_second.set(generated / elapsed)
        eos = self.tokenizer.eos_token_id
        ended = generated > 0 and eos is not None and int(output[0, -1]) == eos
        chunks.put(("done", generated, "stop" if ended or generated < max_new_tokens else "length"))


class Busy(Exception):
    pass


class Admission:
    """One generation runs; at most `max_queue` wait for it. Counted on the event loop."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.max_queue = settings.max_queue
        self.metrics = metrics
        self.admitted = 0
        self.running = False
        self.recent_seconds = 5.0

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the generations ahead at the recent pace."""
        return max(1, int(self.recent_seconds * max(self.admitted, 1) + 0.999))

    def enter(self) -> None:
        if self.admitted >= 1 + self.max_queue:
            raise Busy()
        self.admitted += 1
        self.metrics.queued.set(max(self.admitted - 1, 0))

    def leave(self, seconds: float | None) -> None:
        self.admitted -= 1
        self.metrics.queued.set(max(self.admitted - 1, 0))
        if seconds is not None:
            self.recent_seconds = 0.7 * self.recent_seconds + 0.3 * seconds


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Errors as OpenAI-compatible servers write them."""
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status, headers=headers)


def _parse(body: Any, settings: Settings) -> tuple[list[dict[str, str]], int, float, bool, bool] | JSONResponse:
    if not isinstance(body, dict):
        return _error(400, "The body must be a JSON object.", "invalid_request_error")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(400, "messages must be a non-empty list.", "invalid_request_error")
    for message in messages:
        if (not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant")
                or not isinstance(message.get("content"), str)):
            return _error(400, "each message needs a role (system, user, assistant) and text content.",
                          "invalid_request_error")
    model = body.get("model")
    if model is not None and model != settings.model_name:
        return _error(404, f"This server serves {settings.model_name}, not {model}.", "model_not_found")
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens", settings.max_new_tokens))
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return _error(400, "max_tokens must be a positive whole number.", "invalid_request_error")
    temperature = body.get("temperature", 0)
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 <= temperature <= 2:
        return _error(400, "temperature must be from 0 to 2.", "invalid_request_error")
    stream = body.get("stream", False)
    options = body.get("stream_options") or {}
    include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
    return messages, min(max_tokens, settings.max_new_tokens), float(temperature), bool(stream), include_usage


def build_app(settings: Settings) -> FastAPI:
    metrics = Metrics(settings)
    state: dict[str, Any] = {"engine": None, "error": None}
    admission = Admission(settings, metrics)
    app = FastAPI(title="ZaaS AirLLM sidecar", docs_url=None, redoc_url=None, openapi_url=None)

    @app.on_event("startup")
    async def load() -> None:
        # Loading (and, the first time, splitting the checkpoint into per-layer shards) takes a
        # while: /health answers meanwhile, saying so.
        async def run() -> None:
            try:
                state["engine"] = await asyncio.to_thread(Engine, settings, metrics)
            except Exception as error:  # noqa: BLE001 - reported by /health
                log.exception("the model failed to load")
                state["error"] = f"{type(error).__name__}: {error}"

        state["loader"] = asyncio.create_task(run())

    @app.get("/health")
    async def health() -> JSONResponse:
        engine: Engine | None = state["engine"]
        body = {
            "status": "ok" if engine else ("failed" if state["error"] else "loading"),
            "model": settings.model_name,
            "model_loaded": engine is not None,
            "engine": engine.engine if engine else settings.engine,
            "device": settings.device,
            "layers": engine.layers if engine else None,
            "compression": settings.compression,
            "prefetching": settings.prefetching,
            "in_flight": 1 if admission.admitted else 0,
            "queued": max(admission.admitted - 1, 0),
            "max_queue": settings.max_queue,
        }
        if state["error"]:
            body["error"] = state["error"]
        return JSONResponse(body, status_code=200 if engine else 503)

    @app.get("/metrics")
    async def scrape() -> PlainTextResponse:
        metrics.refresh()
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": settings.model_name, "object": "model", "owned_by": "zaas"}]})

    @app.post("/v1/chat/completions")
    async def complete(request: Request):  # noqa: ANN202
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            metrics.requests.labels("invalid").inc()
            return _error(400, "The body is not valid JSON.", "invalid_request_error")
        parsed = _parse(body, settings)
        if isinstance(parsed, JSONResponse):
            metrics.requests.labels("invalid").inc()
            return parsed
        messages, max_tokens, temperature, stream, include_usage = parsed
        engine: Engine | None = state["engine"]
        if engine is None:
            metrics.requests.labels("unavailable").inc()
            return _error(503, "The model is not loaded yet." if not state["error"] else "The model failed to load.",
                          "unavailable", {"Retry-After": "5"})
        try:
            admission.enter()
        except Busy:
            metrics.requests.labels("busy").inc()
            return _error(429, "The model is busy; try again later.", "busy",
                          {"Retry-After": str(admission.retry_after())})
        try:
            input_ids = engine.encode(messages)
        except Exception as error:  # noqa: BLE001 - a template the messages do not fit
            admission.leave(None)
            metrics.requests.labels("invalid").inc()
            return _error(400, f"The messages cannot be encoded: {error}", "invalid_request_error")

        chunks: queue.Queue[Any] = queue.Queue()
        cancelled = threading.Event()
        identifier = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        prompt_tokens = int(input_ids.shape[-1])

        async def pieces():  # noqa: ANN202
            """The generation's pieces as they come; runs it (waiting its turn) on a worker thread."""
            started = time.monotonic()
            worker = asyncio.get_running_loop().run_in_executor(
                executor, engine.generate, input_ids, max_tokens, temperature, chunks, cancelled)
            try:
                while True:
                    item = await asyncio.to_thread(chunks.get)
                    yield item
                    if item[0] != "text":
                        break
                await worker
            finally:
                cancelled.set()
                admission.leave(time.monotonic() - started)

        def usage(completion_tokens: int) -> dict[str, int]:
            return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens}

        if not stream:
            text, done = [], None
            try:
                async for item in pieces():
                    if item[0] == "text":
                        text.append(item[1])
                    else:
                        done = item
            except asyncio.CancelledError:
                cancelled.set()
                metrics.requests.labels("abandoned").inc()
                raise
            if done is None or done[0] == "error":
                metrics.requests.labels("failed").inc()
                return _error(500, f"Generation failed: {done[1] if done else 'no result'}", "server_error")
            metrics.requests.labels("ok").inc()
            return JSONResponse({
                "id": identifier, "object": "chat.completion", "created": created, "model": settings.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(text)},
                             "finish_reason": done[2]}],
                "usage": usage(done[1]),
            })

        async def events():  # noqa: ANN202
            def chunk(delta: dict[str, str], finish: str | None = None) -> str:
                return "data: " + json.dumps({
                    "id": identifier, "object": "chat.completion.chunk", "created": created,
                    "model": settings.model_name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"

            try:
                yield chunk({"role": "assistant", "content": ""})
                async for item in pieces():
                    if item[0] == "text":
                        yield chunk({"content": item[1]})
                    elif item[0] == "error":
                        metrics.requests.labels("failed").inc()
                        yield "data: " + json.dumps({"error": {"message": item[1], "type": "server_error"}}) + "\n\n"
                        return
                    else:
                        yield chunk({}, item[2])
                        if include_usage:
                            yield "data: " + json.dumps({
                                "id": identifier, "object": "chat.completion.chunk", "created": created,
                                "model": settings.model_name, "choices": [], "usage": usage(item[1])}) + "\n\n"
                yield "data: [DONE]\n\n"
                metrics.requests.labels("ok").inc()
            except (asyncio.CancelledError, GeneratorExit):
                cancelled.set()
                metrics.requests.labels("abandoned").inc()
                raise

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    # One thread generates; requests wait their turn on it (Admission bounds how many).
    from concurrent.futures import ThreadPoolExecutor

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="airllm")
    app.state.settings = settings
    return app


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format='{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","message":"%(message)s"}')
    settings = Settings.from_environment()
    uvicorn.run(build_app(settings), host=settings.host, port=settings.port, log_level="warning",
                access_log=False, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
