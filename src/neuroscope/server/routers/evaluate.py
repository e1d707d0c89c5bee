"""``/ws/evaluate``: the evaluation panel. On connect the server sends ``ready`` with its default prompt set
(the organism's held-out prompts: ``neuroscope ui --organism DIR``, or the served model folder's
``organism.json``). Each ``evaluate`` message runs ``neuroscope.lab.evaluation.evaluate_edits`` on the model
worker with the named live edits and answers ``progress`` (done/total prompts) then ``result``. A newer
message supersedes a running one: it stops at its next batch, so toggling edits quickly costs one batch.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from neuroscope.errors import NeuroscopeError, NoPromptSetError
from neuroscope.lab.evaluation import PanelConfig, PromptSet, Reference, evaluate_edits, reference
from neuroscope.server.errors import error_status, validation_message
from neuroscope.server.schemas.evaluate import EvaluateRequest

router = APIRouter(tags=["evaluate"])


class _Superseded(Exception):
    """Raised inside a running evaluation when a newer request arrived."""


def default_prompts(app: Any) -> PromptSet | None:
    """The organism's held-out set, read once per server (``--organism``, else the model folder)."""
    if not hasattr(app.state, "eval_prompts"):
        s = app.state.settings
        app.state.eval_prompts = PromptSet.from_manifest(s.organism or s.model, n=s.eval_prompts)
        app.state.eval_refs = {}
    return app.state.eval_prompts


def _prompts(app: Any, req: EvaluateRequest) -> tuple[PromptSet, str | None]:
    default = default_prompts(app)
    if req.prompts is None:
        if default is None:
            raise NoPromptSetError(
                "This server has no organism prompt set: start it with `neuroscope ui --organism DIR` (a "
                'backdoor organism folder with organism.json) or send prompts {"triggered": [...], "clean": '
                '[...], "response": "..."}.'
            )
        return default, "organism"
    response = req.prompts.response or (default.response if default else "")
    ps = PromptSet(
        tuple(p for p in req.prompts.triggered if p.strip()),
        tuple(p for p in req.prompts.clean if p.strip()),
        response,
        default.trigger if default else None,
        "the uploaded file",
    )
    return ps, None


@router.websocket("/ws/evaluate")
async def evaluate_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    app = websocket.app
    worker, limit = app.state.worker, app.state.settings.max_body_bytes
    send_lock = asyncio.Lock()
    loop = asyncio.get_running_loop()
    current: dict[str, Any] = {"seq": 0, "task": None}

    async def send(payload: dict[str, Any]) -> None:
        async with send_lock:
            await websocket.send_text(json.dumps(payload))

    async def run(req: EvaluateRequest, seq: int) -> None:
        try:
            ps, key = _prompts(app, req)
            cfg = PanelConfig(max_new_tokens=req.max_new_tokens, batch_size=req.batch_size)
            refs: dict[Any, Reference] = app.state.eval_refs
            ref_key = (key, cfg.max_new_tokens, cfg.clean_tokens) if key else None

            def progress(done: int, total: int) -> None:  # on the model thread
                if current["seq"] != seq:
                    raise _Superseded()
                asyncio.run_coroutine_threadsafe(
                    send({"type": "progress", "id": req.id, "done": done, "total": total}), loop
                )

            def job() -> dict[str, Any]:
                ref = refs.get(ref_key) if ref_key else None
                if ref is None and ref_key:  # the unedited answers, once per server and prompt set
                    ref = refs[ref_key] = reference(worker.model, ps, cfg)
                return evaluate_edits(worker.model, ps, req.edits, cfg, ref, progress).to_dict()

            t0 = time.perf_counter()
            out = await worker.call(job, priority=1)
            await send(
                {"type": "result", "id": req.id, "result": out.value, "seconds": time.perf_counter() - t0}
            )
        except _Superseded:
            pass
        except NeuroscopeError as e:
            await send({"type": "error", "id": req.id, "status": error_status(e), "detail": str(e)})
        except (asyncio.CancelledError, WebSocketDisconnect):
            raise
        except Exception as e:  # a bug, not bad input: say so, and keep serving this client
            await send(
                {
                    "type": "error",
                    "id": req.id,
                    "status": 500,
                    "detail": f"internal error: {type(e).__name__}: {e}",
                }
            )

    try:
        default = await asyncio.to_thread(default_prompts, app)
        await send({"type": "ready", "prompts": default.to_dict() if default else None})
        while True:
            text = await websocket.receive_text()
            if len(text.encode()) > limit:
                await send(
                    {
                        "type": "error",
                        "id": None,
                        "status": 413,
                        "detail": f"Message is larger than {limit} bytes.",
                    }
                )
                continue
            try:
                req = EvaluateRequest.model_validate_json(text)
            except ValidationError as e:
                await send({"type": "error", "id": None, "status": 422, "detail": validation_message(e)})
                continue
            current["seq"] += 1
            current["task"] = asyncio.create_task(run(req, current["seq"]))
    except WebSocketDisconnect:
        pass
    finally:
        current["seq"] += 1  # a running evaluation stops at its next batch
        task = current["task"]
        if task is not None:
            task.cancel()
