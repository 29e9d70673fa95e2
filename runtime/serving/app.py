"""The KServe v2 HTTP server: a Starlette app over a model repository.

Routes (the Open Inference Protocol's HTTP/REST side):

    GET  /v2                                   server metadata
    GET  /v2/health/live, /v2/health/ready     liveness; readiness (models loaded or failed, none stopped)
    GET  /v2/models/{name}[/versions/{v}]      model metadata (a model that failed to load: 503 + reason)
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer
    GET  /metrics                              Prometheus text format

A model runs on its own single worker thread (sessions are not re-entrant), so the event
loop stays free while it computes; with `max_batch` > 1 requests that arrive within
`max_delay_ms` run as one batch (see `batching`). Requests beyond a model's queue bound
get 503 with Retry-After instead of waiting without limit.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from dlc.errors import InputMismatchError
from dlc.runtime.serving.batching import Batcher, BatcherStopped
from dlc.runtime.serving.protocol import (
    ProtocolError,
    decode_inputs,
    encode_outputs,
    tensor_metadata,
)
from dlc.runtime.serving.repository import ModelVersion, Repository
from dlc.specs import TensorSpec
from dlc.version import __version__


@dataclass(frozen=True)
class ServeConfig:
    max_queue: int = 64  # requests waiting or running per model before 503
    max_batch: int = 1  # samples one run may take; >1 turns on dynamic batching
    max_delay_ms: float = 2.0  # how long the first request of a batch waits for company
    max_body_bytes: int = 16 << 20
    read_timeout: float = 30.0  # seconds a request body may take to arrive
    max_connections: int = 512  # open connections and requests beyond which uvicorn answers 503
    token: str | None = None  # bearer token every request but the health probes must carry


OFF_LOOP_BYTES = 1 << 20  # JSON headers larger than this are decoded on a worker thread


class _Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("dlc_requests", "Inference requests by model and HTTP status",
                                ["model", "status"], registry=self.registry)
        self.in_flight = Gauge("dlc_requests_in_flight", "Inference requests received and not yet answered",
                               ["model"], registry=self.registry)
        buckets = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
        self.latency = Histogram("dlc_request_seconds", "Inference latency by stage (queue, compute, total)",
                                 ["model", "stage"], buckets=buckets, registry=self.registry)
        self.batch = Histogram("dlc_batch_size", "Samples per model run (dynamic batching)", ["model"],
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)

    def observer(self, model: str):
        def observe(stage: str, value: float) -> None:
            (self.batch.labels(model) if stage == "batch_size" else self.latency.labels(model, stage)).observe(value)
        return observe


class _ModelRunner:
    """One model version: its worker thread, its dynamic batcher, the batch it takes, its queue bound."""

    def __init__(self, model: ModelVersion, config: ServeConfig, metrics: _Metrics):
        self.model, self.max_queue, self.pending, self.arriving = model, config.max_queue, 0, 0
        specs = model.session.inputs
        firsts = {s.shape[0] if s.shape else None for s in specs}
        first = firsts.pop() if len(firsts) == 1 else None
        batched = model.batch_axis and first is not None
        if not batched:  # each request runs alone, its shapes as the model declares them, its outputs whole
            self.limit, merge, pad_to = None, 1, None
        elif isinstance(first, int):  # a fixed batch B: requests carry up to B samples, padded to B
            self.limit, merge, pad_to = first, min(first, config.max_batch), first if first > 1 else None
        else:  # a symbolic batch: any size, merged up to --max-batch and within a dynamic artifact's bound
            bound = getattr(model.session, "bounds", {}).get(first)
            most = min(config.max_batch, bound) if bound else config.max_batch
            self.limit, merge, pad_to = (most if config.max_batch > 1 else bound), most, None
        self.batched = batched
        relabel = batched and (self.limit is None or self.limit > 1)
        self.inputs = [TensorSpec(s.name, ("batch", *s.shape[1:]), s.dtype) if relabel else s for s in specs]
        self.outputs = [TensorSpec(s.name, ("batch", *s.shape[1:]), s.dtype) if relabel and s.shape else s
                        for s in model.session.outputs]
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"dlc-{model.name}")
        self.batcher = Batcher(model.session.run, merge, config.max_delay_ms / 1000, pad_to, executor,
                               metrics.observer(model.name), expecting=lambda: self.arriving > 0, batched=batched)

    async def run(self, inputs):
        if self.batched:
            rows = {len(v) for v in inputs.values()}
            if len(rows) > 1:
                raise ProtocolError(400, f"the inputs differ in their first (batch) dimension: {sorted(rows)}; "
                                         "send the same number of samples in every input")
            if self.limit is not None and max(rows) > self.limit:
                raise ProtocolError(400, f"a batch of {max(rows)} is over model {self.model.name!r}'s maximum of "
                                         f"{self.limit}")
        if self.batcher.failure:
            raise ProtocolError(503, f"model {self.model.name!r} is not ready: {self.batcher.failure}")
        if self.pending >= self.max_queue:
            raise ProtocolError(503, f"model {self.model.name!r} has {self.pending} requests queued (limit "
                                     f"{self.max_queue}); retry shortly", retry_after=1)
        self.pending += 1
        try:
            return await self.batcher.submit(inputs)
        except BatcherStopped as e:
            raise ProtocolError(503, f"model {self.model.name!r} is not ready: {e}") from e
        except InputMismatchError as e:  # what only the model's session can tell: a size over a dynamic bound
            raise ProtocolError(400, str(e)) from e
        except Exception as e:
            raise ProtocolError(500, f"model {self.model.name!r} failed on this request: {type(e).__name__}: "
                                     f"{' '.join(str(e).split())[:500]}") from e
        finally:
            self.pending -= 1


class _Server:
    """The handlers of one app: the repository, its model runners and the metrics they share."""

    def __init__(self, repo: Repository, config: ServeConfig):
        self.repo, self.config, self.metrics = repo, config, _Metrics()
        self.runners: dict[tuple[str, str], _ModelRunner] = {}
        for versions in repo.models.values():
            for model in versions.values():
                if model.ready:
                    self._add_runner(model)

    def _add_runner(self, model: ModelVersion) -> None:
        try:
            self.runners[(model.name, model.version)] = _ModelRunner(model, self.config, self.metrics)
        except Exception as e:  # noqa: BLE001 - specs it cannot serve keep this one model out, not the server
            model.session, model.error = None, f"{type(e).__name__}: {' '.join(str(e).split())}"[:1000]

    def lookup(self, request, must_be_ready: bool = True) -> ModelVersion:
        """The model version a request names; 404 if there is none, 503 if it failed to load."""
        name, version = request.path_params["name"], request.path_params.get("version")
        model = self.repo.find(name, version)
        if model is None:
            known = ", ".join(f"{n} (versions {', '.join(v)})" for n, v in self.repo.models.items())
            what = f"model {name!r}" + (f" version {version!r}" if version else "")
            raise ProtocolError(404, f"{what} is not in this repository; it serves: {known}")
        return _ready(model) if must_be_ready else model

    async def server_metadata(self, request):
        from starlette.responses import JSONResponse

        return JSONResponse({"name": "dlc", "version": __version__, "extensions": ["binary_tensor_data"]})

    async def live(self, request):
        from starlette.responses import Response

        return Response(status_code=200)

    async def ready(self, request):
        """Models are loaded (or failed) before the server listens; a model whose batcher stopped is not ready."""
        from starlette.responses import JSONResponse, Response

        if any(r.batcher.failure for r in self.runners.values()):  # which one, the token-guarded routes say
            return JSONResponse({"error": "not ready: a model stopped serving"}, status_code=503)
        return Response(status_code=200)

    async def model_metadata(self, request):
        from starlette.responses import JSONResponse

        model = self.lookup(request)
        runner = self.runners[(model.name, model.version)]
        return JSONResponse({"name": model.name, "versions": sorted(self.repo.models[model.name]),
                             "platform": model.platform, "max_batch_size": runner.limit or 0,
                             "inputs": [tensor_metadata(s) for s in runner.inputs],
                             "outputs": [tensor_metadata(s) for s in runner.outputs]})

    async def model_ready(self, request):
        from starlette.responses import Response

        model = self.lookup(request)
        failure = self.runners[(model.name, model.version)].batcher.failure
        if failure:
            raise ProtocolError(503, f"model {model.name!r} version {model.version} is not ready: {failure}")
        return Response(status_code=200)

    async def infer(self, request):
        model = self.lookup(request, must_be_ready=False)
        start, status = time.perf_counter(), 500
        self.metrics.in_flight.labels(model.name).inc()
        try:
            response = await self._infer(request, model)
            status = 200
            return response
        except ProtocolError as e:
            status = e.status
            raise
        finally:
            self.metrics.in_flight.labels(model.name).dec()
            self.metrics.requests.labels(model.name, str(status)).inc()
            self.metrics.latency.labels(model.name, "total").observe(time.perf_counter() - start)

    async def _infer(self, request, model: ModelVersion):
        from starlette.responses import JSONResponse, Response

        _ready(model)  # a model that failed to load: 503, counted like any request
        runner = self.runners[(model.name, model.version)]
        runner.arriving += 1  # a batch being formed waits for requests still being read
        try:
            body, binary = await _read_body(request, self.config.max_body_bytes, self.config.read_timeout)
            inputs = decode_inputs(body, runner.inputs, binary)
        finally:
            runner.arriving -= 1
        outputs = await runner.run(inputs)
        tensors, tail = encode_outputs(outputs, body)
        answer = {"model_name": model.name, "model_version": model.version, "outputs": tensors}
        if "id" in body:
            answer["id"] = body["id"]
        if not tail:
            return JSONResponse(answer)
        header = json.dumps(answer, separators=(",", ":")).encode()
        return Response(header + tail, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(len(header))})

    async def prometheus(self, request):
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        from starlette.responses import Response

        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def routes(self) -> list:
        from starlette.routing import Route

        routes = [Route("/v2", self.server_metadata), Route("/v2/health/live", self.live),
                  Route("/v2/health/ready", self.ready), Route("/metrics", self.prometheus)]
        for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
            routes += [Route(prefix, self.model_metadata), Route(prefix + "/ready", self.model_ready),
                       Route(prefix + "/infer", self.infer, methods=["POST"])]
        return routes


def _ready(model: ModelVersion) -> ModelVersion:
    if not model.ready:
        raise ProtocolError(503, f"model {model.name!r} version {model.version} failed to load: {model.error}")
    return model


async def _protocol_error(request, exc: ProtocolError):
    from starlette.responses import JSONResponse

    # The body may be unread (a 401/404 before it, a 408/413 while it came): the connection
    # closes rather than wait on what is left of it.
    headers = {"Connection": "close", **({"Retry-After": str(exc.retry_after)} if exc.retry_after else {})}
    return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)


async def _not_found(request, exc):
    from starlette.responses import JSONResponse

    return JSONResponse({"error": f"no route {request.method} {request.url.path}"},
                        status_code=getattr(exc, "status_code", 404))


def create_app(repo: Repository, config: ServeConfig = ServeConfig()):
    """The ASGI app serving `repo` (its models already loaded, or failed with a reason)."""
    from starlette.applications import Starlette

    server = _Server(repo, config)
    app = Starlette(routes=server.routes(), exception_handlers={ProtocolError: _protocol_error, 404: _not_found,
                                                                405: _not_found})
    if config.token:
        app.add_middleware(_BearerToken, token=config.token)
    app.state.runners = server.runners
    return app


async def _read_body(request, limit: int, seconds: float) -> tuple[dict, bytes]:
    """The JSON header of the request and, with the binary extension, the bytes after it.

    The body must arrive within `seconds` (a client sending a byte a second, or fewer bytes
    than its Content-Length, is answered 408); a large JSON header is decoded on a worker
    thread, so the event loop keeps answering others meanwhile.
    """
    declared = request.headers.get("content-length")
    if declared is not None and _is_count(declared) and int(declared) > limit:
        raise ProtocolError(413, f"the request body has {declared} bytes; the limit is {limit} (--max-body-mb)")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise ProtocolError(413, f"the request body is over the {limit}-byte limit (--max-body-mb)")
    except TimeoutError:
        raise ProtocolError(408, f"the request body did not arrive within {seconds:g} s (--read-timeout)") from None
    raw = b"".join(chunks)
    header_length = request.headers.get("inference-header-content-length")
    split = len(raw)
    if header_length is not None:
        if not _is_count(header_length) or int(header_length) > len(raw):
            raise ProtocolError(400, f"Inference-Header-Content-Length {header_length!r} does not fit the "
                                     f"{len(raw)}-byte body")
        split = int(header_length)
    try:
        header = raw[:split]
        body = await asyncio.to_thread(json.loads, header) if len(header) > OFF_LOOP_BYTES else json.loads(header)
    except (ValueError, RecursionError) as e:  # bad JSON, bad UTF-8, a 5,000-digit number, 100k-deep nesting
        raise ProtocolError(400, f"the request body is not valid JSON ({' '.join(str(e).split())[:200]})") from e
    if not isinstance(body, dict):
        raise ProtocolError(400, "the request body must be a JSON object")
    return body, raw[split:]


def header_deadline_protocol(seconds: float):
    """uvicorn's httptools protocol, answering 408 and closing a connection whose request line and headers
    take longer than `seconds` to arrive (a client sending a byte a second holds nothing for long).

    The clock starts when the connection opens and again at the first byte of each further
    request on it; idle kept-alive connections are uvicorn's own timeout's.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    body = json.dumps({"error": f"the request headers did not arrive within {seconds:g} s (--read-timeout)"}).encode()
    answer = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    class HeaderDeadline(HttpToolsProtocol):
        _timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self):
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self):
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

        def _arm(self):
            if self._timer is None:
                self._timer = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self):
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _too_slow(self):
            self._timer = None
            if self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete:  # never in the middle of another answer
                self.transport.write(answer)
            self.transport.close()

    return HeaderDeadline


def _is_count(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes '²', which int() refuses."""
    return text.isascii() and text.isdigit()


class _BearerToken:
    """Rejects requests without `Authorization: Bearer TOKEN` (compared in constant time).

    The health probes stay open: orchestrators' liveness checks carry no credentials, and
    they reveal nothing about the models.
    """

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    async def __call__(self, scope, receive, send):
        import hmac

        from starlette.responses import JSONResponse

        if scope["type"] == "http" and not scope["path"].startswith("/v2/health/"):
            headers = dict(scope["headers"])
            given = headers.get(b"authorization", b"")  # bytes: a non-ASCII header or token compares too
            if not hmac.compare_digest(given, f"Bearer {self.token}".encode()):
                response = JSONResponse({"error": "missing or wrong bearer token (Authorization: Bearer TOKEN)"},
                                        status_code=401, headers={"WWW-Authenticate": "Bearer", "Connection": "close"})
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)
