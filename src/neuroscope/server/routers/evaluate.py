"""``/ws/evaluate``: the evaluation panel. On connect the server sends ``ready`` with its default prompt set
(the organism's held-out prompts: ``neuroscope ui --organism DIR``, or the served model folder's
``organism.json``). Each ``evaluate`` message runs ``neuroscope.lab.evaluation.evaluate_edits`` on the model
worker with the named live edits and answers ``progress`` (done/total prompts) then ``result``. A newer
message supersedes a running one: it stops at its next batch, so toggling edits quickly costs one batch.
Each batch is its own job on the model worker, so live next-token requests overtake an evaluation. An
``effects`` message answers ``effects``: the attached SAEs' features ranked by causal effect on the organism's
response for one prompt (``neuroscope.lab.prompt_effects``), with the organism's trigger and response.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Generator
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from neuroscope.errors import NoPromptSetError
from neuroscope.lab.evaluation import (
    PanelConfig,
    PanelResult,
    PromptSet,
    Reference,
    evaluation_steps,
    reference,
)
from neuroscope.server.errors import receive_text_frame, validation_message, ws_error
from neuroscope.server.schemas.evaluate import EffectsRequest, EvaluateRequest

router = APIRouter(tags=["evaluate"])


def _step(steps: Generator[tuple[int, int], None, PanelResult]) -> tuple[int, int] | PanelResult:
    try:
        return next(steps)
    except StopIteration as stop:
        return stop.value


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
    for p in (*req.prompts.triggered, *req.prompts.clean):
        app.state.worker.check_prompt(p)  # the server's prompt limits, as for every other view
    response = req.prompts.response or (default.response if default else "")
    ps = PromptSet(
        tuple(p for p in req.prompts.triggered if p.strip()),
        tuple(p for p in req.prompts.clean if p.strip()),
        response,
        default.trigger if default else None,
        "the uploaded file",
    )
    return ps, None


def _kind(text: str) -> Any:
    try:
        return json.loads(text).get("type")
    except (ValueError, AttributeError):
        return None  # not a JSON object: the request model says what is wrong


def _effects_args(app: Any, req: EffectsRequest) -> tuple[Any, str, str, str]:
    from neuroscope.lab.prompt_effects import prompt_effects

    ps = default_prompts(app)
    if ps is None or not ps.trigger:
        raise NoPromptSetError(
            "Ranking features by effect needs the organism's trigger and response: start the server with "
            "`neuroscope ui --organism DIR` (a backdoor organism folder with organism.json)."
        )
    prompt = req.prompt if req.prompt is not None else ps.triggered[0]
    app.state.worker.check_prompt(prompt)
    return prompt_effects, prompt, ps.trigger, ps.response


@router.websocket("/ws/evaluate")
async def evaluate_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    app = websocket.app
    worker, limit = app.state.worker, app.state.settings.max_body_bytes
    send_lock = asyncio.Lock()
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
            t0 = time.perf_counter()
            ref = refs.get(ref_key) if ref_key else None
            if ref is None and ref_key:  # the unedited answers, once per server and prompt set
                ref = refs[ref_key] = (await worker.call(reference, worker.model, ps, cfg)).value
            steps = evaluation_steps(worker.model, ps, req.edits, cfg, ref)
            # one batch per job on the model thread: live requests overtake an evaluation between batches,
            # and a newer request from this client stops this one there
            while current["seq"] == seq:
                out = (await worker.call(_step, steps)).value
                if isinstance(out, PanelResult):
                    seconds = time.perf_counter() - t0
                    await send({"type": "result", "id": req.id, "result": out.to_dict(), "seconds": seconds})
                    return
                await send({"type": "progress", "id": req.id, "done": out[0], "total": out[1]})
            steps.close()
        except (asyncio.CancelledError, WebSocketDisconnect):
            raise
        except Exception as e:  # bad input or a bug: answered, and this client keeps being served
            await send(ws_error(req.id, e))

    async def effects(req: EffectsRequest) -> None:
        try:
            t0 = time.perf_counter()
            fn, prompt, trigger, response = await asyncio.to_thread(_effects_args, app, req)
            lab = app.state.lab
            saes = {n: a.sae for n, a in lab.saes.items()}
            out = await worker.call(fn, worker.model, saes, prompt, trigger, response, req.top, lab.labels)
            seconds = time.perf_counter() - t0
            await send({"type": "effects", "id": req.id, "result": out.value.to_dict(), "seconds": seconds})
        except (asyncio.CancelledError, WebSocketDisconnect):
            raise
        except Exception as e:  # bad input or a bug: answered, and this client keeps being served
            await send(ws_error(req.id, e))

    try:
        default = await asyncio.to_thread(default_prompts, app)
        await send({"type": "ready", "prompts": default.to_dict() if default else None})
        while True:
            text = await receive_text_frame(websocket, limit, send)
            if text is None:
                continue
            try:
                if _kind(text) == "effects":
                    asyncio.create_task(effects(EffectsRequest.model_validate_json(text)))
                    continue
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
