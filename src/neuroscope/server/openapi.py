"""Write the committed OpenAPI spec (``ui/openapi.json``); ``npm run gen:types`` turns it into TypeScript.

``python -m neuroscope.server.openapi [--check]``. The spec does not depend on the model, so the tiny one is used.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
SPEC = ROOT / "ui" / "openapi.json"
TYPES = ROOT / "ui" / "src" / "api" / "schema.d.ts"


def current_spec() -> dict[str, Any]:
    from neuroscope.models.loading import load_model
    from neuroscope.server.app import create_app
    from neuroscope.server.settings import Settings

    return create_app(Settings(model="tiny:llama"), model=load_model("tiny:llama")).openapi()


def render(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"


def spec_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = render(current_spec())
    if "--check" in argv:
        ok = SPEC.exists() and SPEC.read_text() == text
        print(
            "ui/openapi.json is " + ("up to date" if ok else "STALE: run python -m neuroscope.server.openapi")
        )
        return 0 if ok else 1
    SPEC.write_text(text)
    print(f"wrote {SPEC} (sha {spec_hash(text)}); now run: cd ui && npm run gen:types")
    return 0


if __name__ == "__main__":
    sys.exit(main())
