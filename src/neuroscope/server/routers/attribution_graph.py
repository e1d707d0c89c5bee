"""Attribution graphs on transcoders: thin wrappers over ``neuroscope.transcoders.workbench`` (model work runs
on the model worker). ``/ws/attribution-graph`` answers node interventions live: one slot per client, a newer
request replaces a queued older one (answered ``superseded``), as ``/ws`` does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from neuroscope.errors import NeuroscopeError
from neuroscope.server.deps import WorkerDep
from neuroscope.server.errors import error_status, validation_message
from neuroscope.server.schemas.attribution_graph import (
    BuildRequest,
    GraphReply,
    InterveneReply,
    InterveneRequest,
    PruneRequest,
    QKReply,
    QKRequest,
    SupernodeEditRequest,
    SupernodesReply,
    SupernodesRequest,
    TranscoderFeatureDetail,
    TranscodersInfo,
    WsIntervene,
)
from neuroscope.transcoders.workbench import AttributionService

router = APIRouter(prefix="/api/attribution-graph", tags=["attribution-graph"])
ws_router = APIRouter(tags=["attribution-graph"])


def get_service(request: Request) -> AttributionService:
    return request.app.state.attribution


ServiceDep = Annotated[AttributionService, Depends(get_service)]


@router.get("/transcoders", response_model=TranscodersInfo)
def transcoders(service: ServiceDep) -> dict[str, Any]:
    return service.info()


@router.post("/build", response_model=GraphReply)
async def build(req: BuildRequest, service: ServiceDep, worker: WorkerDep) -> dict[str, Any]:
    out = await worker.call(
        service.build,
        req.prompt,
        req.node_threshold,
        req.edge_threshold,
        max_feature_nodes=req.max_feature_nodes,
    )
    return out.value


@router.post("/prune", response_model=GraphReply)
def prune(req: PruneRequest, service: ServiceDep) -> dict[str, Any]:
    return service.prune(req.graph_id, req.node_threshold, req.edge_threshold)


@router.post("/supernodes", response_model=SupernodesReply)
def supernodes(req: SupernodesRequest, service: ServiceDep) -> dict[str, Any]:
    return service.supernodes(
        req.graph_id, req.node_threshold, req.edge_threshold, req.threshold, req.role_weight
    )


@router.post("/supernodes/edit", response_model=SupernodesReply)
def edit_supernodes(req: SupernodeEditRequest, service: ServiceDep) -> dict[str, Any]:
    edit = req.edit.model_dump(exclude_none=True)
    if req.edit.op == "move":
        edit["to"] = req.edit.to  # null is meaningful: out of every supernode
    return service.edit_supernodes(
        req.graph_id, req.spec.model_dump(), edit, req.node_threshold, req.edge_threshold
    )


@router.post("/qk", response_model=QKReply)
async def qk(req: QKRequest, service: ServiceDep, worker: WorkerDep) -> dict[str, Any]:
    out = await worker.call(service.qk, req.prompt, req.layer, req.head, req.query_pos, req.key_pos, req.top)
    return out.value


@router.get("/feature/{layer}/{feature}", response_model=TranscoderFeatureDetail)
def feature(
    layer: Annotated[int, Path(ge=0, le=10_000)],
    feature: Annotated[int, Path(ge=0, le=10_000_000)],
    service: ServiceDep,
    graph_id: Annotated[str | None, Query(pattern=r"^g[0-9]{1,12}$")] = None,
    k: Annotated[int, Query(ge=1, le=50)] = 10,
) -> dict[str, Any]:
    return service.feature(layer, feature, graph_id, k)


def _intervene_args(req: InterveneRequest) -> tuple[Any, ...]:
    ivs = [i.model_dump() for i in req.interventions]
    spec = req.spec.model_dump() if req.spec is not None else None
    return req.graph_id, ivs, spec, req.top_k, req.freeze


@router.post("/intervene", response_model=InterveneReply)
async def intervene(req: InterveneRequest, service: ServiceDep, worker: WorkerDep) -> dict[str, Any]:
    out = await worker.call(service.intervene, *_intervene_args(req), priority=0)
    return out.value


@ws_router.websocket("/ws/attribution-graph")
async def live(websocket: WebSocket) -> None:
    await websocket.accept()
    app = websocket.app
    worker, service, limit = app.state.worker, app.state.attribution, app.state.settings.max_body_bytes
    pending: list[tuple[WsIntervene, float]] = []  # at most one: the newest request
    wake = asyncio.Event()
    send_lock = asyncio.Lock()

    async def send(payload: dict[str, Any]) -> None:
        async with send_lock:
            await websocket.send_text(json.dumps(payload))

    async def pump() -> None:
        while True:
            while not pending:
                wake.clear()
                await wake.wait()
            req, received = pending.pop()
            try:
                out = await worker.call(service.intervene, *_intervene_args(req), priority=0)
                total = (time.perf_counter() - received) * 1e3
                await send({"type": "result", "id": req.id, **out.value, "timings": out.timings(total)})
            except NeuroscopeError as e:
                await send({"type": "error", "id": req.id, "status": error_status(e), "detail": str(e)})
            except Exception as e:  # a bug, not bad input: say so, and keep serving this client
                detail = f"internal error: {type(e).__name__}: {e}"
                await send({"type": "error", "id": req.id, "status": 500, "detail": detail})

    task = asyncio.create_task(pump())
    try:
        while True:
            message = await websocket.receive()
            received = time.perf_counter()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            text = message.get("text")
            if text is None or len(text.encode()) > limit:
                status, detail = (
                    (415, "Send each request as JSON in a text frame.")
                    if text is None
                    else (413, f"Message is larger than {limit} bytes.")
                )
                await send({"type": "error", "id": None, "status": status, "detail": detail})
                continue
            try:
                req = WsIntervene.model_validate_json(text)
            except ValidationError as e:
                await send(
                    {"type": "error", "id": _peek_id(text), "status": 422, "detail": validation_message(e)}
                )
                continue
            if pending:
                await send({"type": "superseded", "id": pending.pop()[0].id})
            pending.append((req, received))
            wake.set()
    except WebSocketDisconnect:
        pass
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def _peek_id(text: str) -> Any:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    value = obj.get("id") if isinstance(obj, dict) else None
    return value if isinstance(value, (int, str)) else None
