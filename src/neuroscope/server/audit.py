"""The refusal-steering audit: every live run that steers along the refusal direction (alpha != 0) appends
one JSON line to a file in the workspace (``--audit-file``, default ``refusal-audit.jsonl``; the path stays
inside the workspace). Lines hold the time, the kind of run, the model, the client's address, the vector, its
layer and alpha, and the prompt's SHA-256 (not the prompt: the log records that the behaviour was steered,
not what was asked).

The direction itself comes from :mod:`neuroscope.organisms.served_direction` (the case study's code); the
server only registers it as a steering vector, so a steered run is the ordinary ``Steer`` path.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuroscope.bundles.files import confined
from neuroscope.server.compute import Spec

if TYPE_CHECKING:
    from neuroscope.server.settings import Settings
    from neuroscope.server.worker import ModelWorker

REFUSAL_VECTOR = "refusal"


class AuditLog:
    """An append-only JSON Lines file confined to ``workspace``; one :meth:`append` = one whole line."""

    def __init__(self, workspace: str | Path, filename: str):
        self.path = confined(Path(workspace), filename, "audit file")
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # one write of a whole line in append mode: concurrent writers never interleave within a line
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(x) for x in self.path.read_text(encoding="utf-8").splitlines() if x.strip()]


@dataclass
class RefusalAudit:
    """Which steering vector is the refusal direction, and the log its live runs go to."""

    log: AuditLog
    model: str
    vector: str = REFUSAL_VECTOR

    def record(self, spec: Spec, prompt: str, client: str, kind: str, worker: ModelWorker) -> bool:
        """Append a line when ``spec`` steers along the refusal direction with alpha != 0; True if it did."""
        if spec.steer is None or spec.steer[0] != self.vector or spec.steer[2] == 0:
            return False
        name, layer, alpha = spec.steer
        entry = worker.vectors.get(name)
        self.log.append(
            {
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "kind": kind,
                "model": self.model,
                "client": client,
                "vector": name,
                "layer": layer if layer is not None else (entry.layer if entry else None),
                "alpha": alpha,
                "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest(),
                "prompt_chars": len(prompt),
            }
        )
        return True


def attach_refusal(model: Any, worker: ModelWorker, settings: Settings) -> RefusalAudit | None:
    """With ``settings.refusal_direction`` (a file, or ``auto``): register the direction as the steering vector
    ``refusal`` and return the audit its runs are logged to; None without it."""
    from neuroscope.organisms import served_direction as sd

    if not settings.refusal_direction:
        return None
    log = AuditLog(settings.workspace, settings.audit_file)  # refuse a bad path before any work
    if settings.refusal_direction == "auto":
        d = sd.cached_refusal_direction(
            model, Path(settings.workspace) / "directions", settings.refusal_layer
        )
    else:
        d = sd.load_refusal_direction(settings.refusal_direction, model)
    worker.add_vector(
        REFUSAL_VECTOR,
        settings.refusal_layer if settings.refusal_layer is not None else d.layer,
        d.vector,
        sd.SOURCE,
    )
    return RefusalAudit(log, model.cfg.name)


def client_of(conn: Any) -> str:
    """``host:port`` of a request's or WebSocket's peer (``unknown`` when the transport does not say)."""
    c = getattr(conn, "client", None)
    return f"{c.host}:{c.port}" if c else "unknown"
