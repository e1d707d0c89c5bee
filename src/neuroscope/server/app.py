"""``create_app(settings)``: the FastAPI application behind ``neuroscope ui``."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from neuroscope.errors import NeuroscopeError
from neuroscope.server.errors import error_status, validation_message
from neuroscope.server.routers import (
    attack,
    attention,
    attribution_graph,
    embeddings,
    evaluate,
    features,
    graphs,
    prepare,
    residual,
    run,
    steering,
    web,
    ws,
)
from neuroscope.server.routers import model as model_router
from neuroscope.server.schemas.attack import ATTACK_WS_MODELS
from neuroscope.server.schemas.attribution_graph import ATTRIBUTION_WS_MODELS
from neuroscope.server.schemas.common import ErrorResponse
from neuroscope.server.schemas.evaluate import EVALUATE_WS_MODELS
from neuroscope.server.schemas.run import WsError, WsRequest, WsResult, WsSuperseded
from neuroscope.server.security import SecurityMiddleware
from neuroscope.server.settings import Settings
from neuroscope.server.worker import ModelWorker

STATIC = Path(__file__).parent / "static"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (401, "missing or wrong token"),
        (404, "unknown resource"),
        (413, "request too large"),
        (422, "invalid input (the message says what and why)"),
    )
}
# Pages get a CSP that forbids loading anything from elsewhere: the UI is entirely in the build.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
WS_MODELS = (
    WsRequest,
    WsResult,
    WsError,
    WsSuperseded,
    *ATTACK_WS_MODELS,
    *EVALUATE_WS_MODELS,
    *ATTRIBUTION_WS_MODELS,
)


def create_app(settings: Settings | None = None, model: Any = None) -> FastAPI:
    """Build the app; loads ``settings.model`` unless a loaded ``model`` is given (tests share one)."""
    settings = settings or Settings()
    if model is None:
        from neuroscope.models.loading import load_model

        model = load_model(settings.model, device=settings.device)
    worker = ModelWorker(
        model,
        cache_size=settings.cache_size,
        max_prompt_tokens=settings.max_prompt_tokens,
        max_prompt_chars=settings.max_prompt_chars,
        vectors_dir=settings.vectors_dir,
        torch_threads=settings.torch_threads,
        max_batch=settings.max_batch,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if preparer is not None:
            preparer.start()
        yield
        if preparer is not None:
            preparer.close()
        worker.close()

    app = FastAPI(
        title="NeuroScope",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Live interpretability workbench: REST views and a WebSocket for next-token runs.",
    )
    app.state.settings = settings
    app.state.worker = worker
    app.state.lab = _lab(model, settings)
    from neuroscope.server.audit import attach_refusal

    app.state.refusal = attach_refusal(model, worker, settings)  # the refusal slider's vector and audit log
    from neuroscope.graphs.service import GraphService

    app.state.graphs = GraphService(model, settings.sae_suite, worker.max_prompt_tokens)
    from neuroscope.transcoders.workbench import AttributionService

    app.state.attribution = AttributionService(model, settings.transcoders, worker.max_prompt_tokens)
    from neuroscope.server.prepare import Preparer, wanted

    # the default SAE suite: found in the cache or built in a child process once the server is up
    preparer = Preparer(model, app.state.lab, app.state.graphs, settings) if wanted(settings) else None
    app.state.preparer = preparer
    for r in (
        model_router,
        run,
        attention,
        residual,
        steering,
        embeddings,
        attack,
        features,
        graphs,
        prepare,
        attribution_graph,
    ):
        app.include_router(r.router, responses=ERRORS)
    app.include_router(attribution_graph.ws_router)
    app.include_router(ws.router)
    app.include_router(evaluate.router)
    app.include_router(web.router)  # NeuroScope-Web (/web/): before the catch-all static mount
    _errors(app)
    _static(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Neuroscope-Token"],
        )
    # streamed bodies without Content-Length are cut off while reading (SecurityMiddleware checks the header)
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=settings.max_body_bytes)
    app.add_middleware(SecurityMiddleware, settings=settings)
    return app


def _lab(model: Any, settings: Settings) -> Any:
    """The Features view's SAEs, edits and labels (``--sae``, ``--bundle``, ``--edit``, ``--workspace``)."""
    from neuroscope.lab.lab import Lab

    lab = Lab(model, settings.workspace)
    for folder in settings.saes:
        lab.attach_folder(folder)
    if settings.bundle:
        lab.attach_bundle(settings.bundle, force=settings.force_bundle)
    for spec in settings.edits:
        lab.attach_edit(spec)
    return lab


def _errors(app: FastAPI) -> None:
    @app.exception_handler(NeuroscopeError)
    async def library_error(_: Request, e: NeuroscopeError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=error_status(e))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(e)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        detail = e.detail
        if e.status_code == 413:  # Starlette's streamed-body limit says only "Content Too Large"
            detail = f"Request body is larger than the limit of {app.state.settings.max_body_bytes} bytes."
        return JSONResponse(
            {"detail": detail}, status_code=e.status_code, headers=getattr(e, "headers", None)
        )


def _static(app: FastAPI) -> None:
    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        if not request.url.path.startswith("/api"):
            response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    if (STATIC / "index.html").exists():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="static")
    else:

        @app.get("/", include_in_schema=False)
        async def not_built() -> HTMLResponse:
            return HTMLResponse(
                "<h1>NeuroScope</h1><p>The UI is not built: run <code>make ui</code> "
                "(or <code>cd ui && npm ci && npm run build</code>). The API is at /api.</p>"
            )


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The REST spec plus the WebSocket message schemas (so the UI gets types for both)."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for m in WS_MODELS:
        js = m.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in js.pop("$defs", {}).items():
            schemas.setdefault(name, sub)
        schemas[m.__name__] = js
    app.openapi_schema = spec
    return spec
