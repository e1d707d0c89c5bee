"""NeuroScope-Web: the built page (``make ui`` → ``server/static/web``) and where its files live."""

from __future__ import annotations

from pathlib import Path

from neuroscope.errors import ResourceNotFoundError

WEB_DIR = Path(__file__).resolve().parent.parent / "server" / "static" / "web"
PAGE = "web.html"


def page_files() -> list[str]:
    """The page's files relative to :data:`WEB_DIR` (its HTML, scripts, worker and onnxruntime's wasm)."""
    if not (WEB_DIR / PAGE).exists():
        raise ResourceNotFoundError(
            f"NeuroScope-Web is not built ({WEB_DIR / PAGE} missing): run `make ui` "
            "(or `cd ui && npm ci && npm run build`), or export with --no-web."
        )
    return sorted(p.relative_to(WEB_DIR).as_posix() for p in WEB_DIR.rglob("*") if p.is_file())
