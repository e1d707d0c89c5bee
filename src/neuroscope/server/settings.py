"""Server settings (pydantic-settings: ``NEUROSCOPE_*`` environment variables or keyword arguments).

Validation refuses an unsafe configuration up front: a server reachable from other machines without a
token would hand the model (and the host's CPU) to anyone on the network.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from neuroscope.errors import InvalidConfigError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_torch_threads() -> int:
    """Half the CPU cores, at least one. With every core, torch's OpenMP threads wait on each other whenever
    another process holds a core: on a busy 2-core machine click-to-logits p95 went from ~0.15 s to ~1.4 s
    (benchmarks/latency_bench.py measures both settings under a parallel CPU load)."""
    return max(1, (os.cpu_count() or 1) // 2)


class InsecureSettingsError(InvalidConfigError):
    """The server would be reachable from other machines without a token."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEUROSCOPE_", frozen=True, extra="forbid")

    model: str = Field(default="smollm2-135m", description="model spec passed to neuroscope.load_model")
    device: str | None = Field(
        default=None, description="torch device for the model (default: the loader's choice)"
    )
    host: str = Field(
        default="127.0.0.1", description="interface to bind; anything but loopback needs a token"
    )
    port: int = Field(default=8000, ge=0, le=65535)
    token: str | None = Field(
        default=None, description="shared secret required on every route and the WebSocket"
    )
    allowed_hosts: tuple[str, ...] = Field(
        default=(), description="extra Host header values to accept ('*' = any)"
    )
    cors_origins: tuple[str, ...] = Field(
        default=(), description="origins allowed by CORS and the WebSocket check"
    )
    max_prompt_chars: int = Field(default=4000, ge=1)
    max_prompt_tokens: int = Field(
        default=128, ge=1, description="longer prompts get a 422 with the limit in the message"
    )
    max_body_bytes: int = Field(
        default=65536, ge=1024, description="larger request bodies / messages get a 413"
    )
    max_new_tokens: int = Field(default=64, ge=1)
    cache_size: int = Field(
        default=8, ge=1, description="plain runs (full residual stream) kept per prompt, LRU"
    )
    top_k: int = Field(default=10, ge=1, le=100)
    max_batch: int = Field(
        default=16, ge=1, le=256, description="live requests from different clients run in one forward"
    )
    torch_threads: int | None = Field(
        default_factory=default_torch_threads,
        ge=1,
        le=256,
        description="intra-op threads for the model worker (default: half the CPU cores, at least 1; "
        "None: torch's default, every core)",
    )
    vectors_dir: str | None = Field(
        default=None, description="folder of saved steering vectors (NAME.safetensors)"
    )
    saes: tuple[str, ...] = Field(default=(), description="SAE folders attached for the Features view")
    bundle: str | None = Field(default=None, description="a bundle (saes/ + lora/ + manifest.json) to attach")
    force_bundle: bool = Field(default=False, description="attach a bundle made for other weights")
    edits: tuple[str, ...] = Field(
        default=(),
        description="LoRA edits attached as live edits, each NAME=FOLDER (a PEFT adapter folder, e.g. the fix "
        "loop's OUT/lora)",
    )
    workspace: str = Field(
        default="workspace",
        description="folder for labels and exported bundles (paths from the UI stay inside)",
    )
    onnx_dir: str | None = Field(
        default=None,
        description="ONNX split export (neuroscope export-onnx) that NeuroScope-Web runs at /web/",
    )
    sae_suite: str | None = Field(
        default=None, description="an SAE suite folder (neuroscope train-sae-suite) for provenance graphs"
    )
    transcoders: str | None = Field(
        default=None,
        description="a transcoders folder (neuroscope train-transcoders) for the attribution-graph view",
    )
    refusal_direction: str | None = Field(
        default=None,
        description="the refusal direction for the workbench's refusal slider: a safetensors file (tensor "
        "'vector', metadata 'layer'), or 'auto' to compute it from the shipped prompt sets (cached in the workspace)",
    )
    refusal_layer: int | None = Field(
        default=None,
        ge=0,
        description="layer of the refusal direction (default: chosen on the validation split)",
    )
    organism: str | None = Field(
        default=None,
        description="a backdoor organism folder (organism.json: trigger, response) whose held-out prompts the "
        "evaluation panel runs (default: the served model folder's own organism.json, when it has one)",
    )
    eval_prompts: int = Field(
        default=24, ge=1, le=120, description="held-out questions per kind in the evaluation panel"
    )
    audit_file: str = Field(
        default="refusal-audit.jsonl",
        description="JSON Lines file inside the workspace that logs every live run steered along the refusal direction",
    )

    prepare: bool = Field(
        default=False,
        description="prepare a default SAE suite in the background when none is attached (recorded and trained "
        "once per model weights, then cached); `neuroscope ui` turns it on unless --no-prepare",
    )
    prepare_dir: str | None = Field(
        default=None, description="where prepared suites are cached (default $NEUROSCOPE_CACHE/prepared)"
    )
    prepare_tokens: int | None = Field(
        default=None,
        ge=256,
        description="tokens to record for the prepared suite (default: chosen from the model's size)",
    )
    prepare_data: str | None = Field(
        default=None, description="corpus for the prepared suite (default data/corpus, else python3-doc)"
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if not is_loopback(self.host) and not self.token:
            raise InsecureSettingsError(
                f"Refusing to serve on {self.host!r} without a token: anyone who can reach this machine could "
                "drive the model. Pass --token T (or NEUROSCOPE_TOKEN) or bind to 127.0.0.1."
            )
        if self.token is not None and len(self.token) < 8:
            raise InsecureSettingsError("The token must be at least 8 characters long.")
        return self

    def host_allowlist(self) -> set[str]:
        """Host header values (without port) the server answers; DNS rebinding gets a 400."""
        hosts = {"127.0.0.1", "localhost", "::1", *self.allowed_hosts}
        if self.host not in ("0.0.0.0", "::"):
            hosts.add(self.host.strip("[]"))
        else:
            # A wildcard bind is reached through this machine's names and addresses; the token guards it.
            name = socket.gethostname()
            hosts.update({name, socket.getfqdn()})
            with contextlib.suppress(OSError):
                hosts.update(socket.gethostbyname_ex(name)[2])
        return hosts
