"""The Features view's routes: thin wrappers over ``neuroscope.lab`` (model work runs on the model worker)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from neuroscope.lab.lab import Lab
from neuroscope.lab.live import LiveEdits
from neuroscope.server.deps import WorkerDep
from neuroscope.server.schemas.features import (
    ContrastRequest,
    ContrastResponse,
    EditList,
    EditRequest,
    ExportRequest,
    ExportResponse,
    FeatureDetail,
    LabelRequest,
    LabelResponse,
    LiveEditInfo,
    Name,
    PromptActs,
    PromptActsRequest,
    SAEList,
    TablePage,
)

router = APIRouter(tags=["features"])


def get_lab(request: Request) -> Lab:
    return request.app.state.lab


LabDep = Annotated[Lab, Depends(get_lab)]


@router.get("/api/features", response_model=SAEList)
async def list_saes(lab: LabDep) -> dict[str, Any]:
    # list() copies in one step: the prepared suite's SAE may be attached from another thread meanwhile
    return {"saes": [a.to_dict() for a in list(lab.saes.values())], "workspace": str(lab.workspace)}


@router.get("/api/features/{sae}/table", response_model=TablePage)
def table(
    sae: Name,
    lab: LabDep,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    sort: Annotated[str, Query(pattern="^(id|density|mean_activation|max_activation)$")] = "id",
    descending: bool = False,
    search: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    return lab.table(sae, offset, limit, sort, descending, search or None)


@router.get("/api/features/{sae}/feature/{feature}", response_model=FeatureDetail)
async def detail(
    sae: Name, feature: Annotated[int, Path(ge=0, le=10_000_000)], lab: LabDep, worker: WorkerDep
) -> dict[str, Any]:
    return (await worker.call(lab.detail, sae, feature)).value


@router.post("/api/features/{sae}/prompt", response_model=PromptActs)
async def on_prompt(sae: Name, req: PromptActsRequest, lab: LabDep, worker: WorkerDep) -> dict[str, Any]:
    worker.check_prompt(req.prompt)
    return (await worker.call(lab.on_prompt, sae, req.prompt, req.feature, req.position, req.k)).value


@router.put("/api/features/{sae}/label", response_model=LabelResponse)
def set_label(sae: Name, req: LabelRequest, lab: LabDep) -> dict[str, Any]:
    lab.set_label(sae, req.feature, req.label)
    return {"sae": sae, "feature": req.feature, "label": lab.labels.get(sae, {}).get(req.feature)}


@router.post("/api/features/{sae}/contrast", response_model=ContrastResponse)
async def contrast(sae: Name, req: ContrastRequest, lab: LabDep, worker: WorkerDep) -> dict[str, Any]:
    for p in [*req.positive, *req.negative]:
        worker.check_prompt(p)
    return (await worker.call(lab.contrast, sae, req.positive, req.negative, req.top)).value


@router.get("/api/edits", response_model=EditList)
async def list_edits(worker: WorkerDep) -> dict[str, Any]:
    return {"edits": [e.to_dict() for e in LiveEdits.of(worker.model).snapshot()]}


@router.post("/api/edits", response_model=LiveEditInfo)
async def prepare_edit(req: EditRequest, lab: LabDep, worker: WorkerDep) -> dict[str, Any]:
    """Prepare an edit once (ablate: a peft LoRA adapter, hot-swapped per request, attached when the model is
    idle and until then applied as its exact hooked form; clamp: the hooked clamp); a client applies it by
    naming it in ``interventions.edits``."""
    out = await worker.call(lab.prepare_edit, req.sae, list(req.features), req.method, req.value, req.rank)
    if out.value.build is not None:  # requests use its exact hooked form until then
        worker.when_idle(LiveEdits.of(worker.model).finish, out.value.name)
    return out.value.to_dict()


@router.post("/api/export", response_model=ExportResponse)
async def export(req: ExportRequest, lab: LabDep, worker: WorkerDep) -> dict[str, Any]:
    path = (await worker.call(lab.export, req.name, list(req.edits), list(req.saes))).value
    manifest = json.loads((path / "manifest.json").read_text())
    return {
        "name": req.name,
        "path": str(path),
        "download": f"/api/export/{req.name}.zip",
        "edits": list(manifest["edits"]),
        "saes": list(manifest["saes"]),
    }


@router.get(
    "/api/export/{name}.zip",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "the bundle as a zip"}},
)
def download(name: Name, lab: LabDep) -> Response:
    return Response(
        lab.bundle_zip(name),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}.zip"'},
    )
