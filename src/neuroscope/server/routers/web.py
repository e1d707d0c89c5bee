"""NeuroScope-Web at ``/web/``: the in-browser page and the ONNX export it runs (``neuroscope ui --onnx DIR``).

The page's own files come from the build (``server/static/web``); ``manifest.json`` and the files it lists
come from the export folder, nothing else from there. Every response is cross-origin isolated (COOP/COEP),
which lets onnxruntime-web use wasm threads.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from neuroscope.export.web import PAGE, WEB_DIR

router = APIRouter(tags=["web"], include_in_schema=False)
ISOLATION = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
MEDIA = {".mjs": "text/javascript", ".wasm": "application/wasm", ".onnx": "application/octet-stream"}


def _file(path: Path, cache: bool = False) -> Response:
    headers = dict(ISOLATION)
    headers["Cache-Control"] = "public, max-age=31536000, immutable" if cache else "no-cache"
    return FileResponse(path, headers=headers, media_type=MEDIA.get(path.suffix))


def _inside(root: Path, rel: str) -> Path | None:
    """``root/rel`` when it is a file under ``root`` (no ``..``, no symlink out); else None."""
    try:
        path = (root / rel).resolve()
        path.relative_to(root.resolve())
    except (ValueError, OSError):
        return None
    return path if path.is_file() else None


@router.get("/web")
async def web_redirect() -> RedirectResponse:
    # relative URLs in the page (manifest.json, assets/, ort/) resolve against /web/
    return RedirectResponse("/web/", status_code=307, headers=ISOLATION)


@router.get("/web/")
async def web_page() -> Response:
    page = WEB_DIR / PAGE
    if not page.exists():
        raise HTTPException(404, "NeuroScope-Web is not built: run `make ui`.")
    return _file(page)


@router.get("/web/{rel:path}")
async def web_file(rel: str, request: Request) -> Response:
    built = _inside(WEB_DIR, rel) if rel != PAGE else None
    if built is not None:
        return _file(built, cache=rel.startswith("assets/"))
    folder = request.app.state.settings.onnx_dir
    if not folder:
        raise HTTPException(
            404, f"{rel}: no ONNX export is served; start with `neuroscope ui --onnx DIR` (see export-onnx)."
        )
    from neuroscope.export import manifest as mf

    root = Path(folder)
    if rel != mf.MANIFEST:
        # only the files the manifest lists (their hashes are checked by the page)
        listed = mf.read_manifest(root).get("files", {})
        if rel not in listed:
            raise HTTPException(404, f"{rel} is not part of the ONNX export.")
    path = _inside(root, rel)
    if path is None:
        raise HTTPException(404, f"{rel} is not in the ONNX export folder.")
    return _file(path)
