"""20 clients over the WebSocket for 30 s, each with its own active feature edits (LoRA adapters chosen per
batch row, hooked clamps) and head ablations, against `neuroscope ui --sae DIR` in its own process: every
reply equals the library's answer for that client's edits, so no client ever sees another's."""

from __future__ import annotations

import json
import os
import random
import threading
import time
import urllib.request

import pytest
import torch
from edits_testutil import fresh
from server_testutil import served_ui
from websockets.sync.client import connect

from neuroscope.interventions import Ablate
from neuroscope.lab.lab import Lab
from neuroscope.lab.live import run_with_edits

SECONDS = float(os.environ.get("NEUROSCOPE_WS_EDIT_SECONDS", "30"))
N_CLIENTS = 20
PROMPT = "client {k} patches features of the model"


def _edits(model, sae) -> list[dict]:
    """Three ablations and two clamps of features that fire on the clients' prompts (so every edit acts)."""
    _, cache = model.run_with_cache([PROMPT.format(k=k) for k in range(3)], names=[sae.cfg.hook_name])
    # the SAE reads the last layer: an edit moves the next-token logits through the last token
    order = sae.encode(cache[sae.cfg.hook_name])[:, -1].amax(0).argsort(descending=True).tolist()
    return [
        {"features": [order[0]], "method": "ablate", "rank": 4},
        {"features": [order[1], order[2]], "method": "ablate", "rank": 4},
        {"features": order[3:6], "method": "ablate", "rank": 8},
        {"features": [order[0]], "method": "clamp", "value": 4.0},
        {"features": [order[6]], "method": "clamp", "value": 2.5},
    ]


def _post(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=120).read())


def test_twenty_clients_with_their_own_edits_for_thirty_seconds(tmp_path):
    from sae_testutil import trained

    sae, _, sae_dir = trained()
    with torch.no_grad():
        edits = _edits(fresh("llama"), sae)
    sae_name = sae_dir.resolve().name
    seen: dict[tuple, set[tuple]] = {}
    counts = [0] * N_CLIENTS
    errors: list[str] = []
    lock = threading.Lock()
    ui_args = ("--threads", "1", "--sae", str(sae_dir), "--workspace", str(tmp_path / "ws"))
    with served_ui(*ui_args) as (base, _):
        names = [_post(base, "/api/edits", {"sae": sae_name, **e})["name"] for e in edits]

        def client(k: int, stop_at: float) -> None:
            rng = random.Random(2000 + k)
            prompt = PROMPT.format(k=k)
            active: set[str] = set()
            heads: set[tuple[int, int]] = set()
            seq = 0
            try:
                with connect(base.replace("http", "ws") + "/ws", open_timeout=30) as ws:
                    while time.monotonic() < stop_at:
                        if rng.random() < 0.8:
                            active ^= {rng.choice(names)}
                        else:
                            heads ^= {(rng.randrange(2), rng.randrange(4))}
                        seq += 1
                        spec = {"edits": sorted(active), "heads": sorted(heads)}
                        ws.send(json.dumps({"id": seq, "prompt": prompt, "interventions": spec, "top_k": 5}))
                        reply = json.loads(ws.recv(timeout=120))
                        if reply["type"] != "result" or reply["id"] != seq:
                            errors.append(f"client {k}: {reply}")
                            return
                        got = (
                            tuple(t["token_id"] for t in reply["top"]),
                            tuple(t["prob"] for t in reply["top"]),
                        )
                        with lock:
                            seen.setdefault(
                                (prompt, tuple(spec["edits"]), tuple(map(tuple, spec["heads"]))), set()
                            ).add(got)
                            counts[k] += 1
            except Exception as e:  # any failure is a test failure, reported below
                errors.append(f"client {k}: {e!r}")

        stop_at = time.monotonic() + SECONDS
        threads = [threading.Thread(target=client, args=(k, stop_at)) for k in range(N_CLIENTS)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    assert not errors, errors[:3]
    assert all(c > 0 for c in counts), counts
    # the library's answer, on this process's own copy of the model and the same prepared edits
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = fresh("llama")
        lab = Lab(model, tmp_path / "lib-ws")
        lab.attach_folder(sae_dir)
        assert [
            lab.prepare_edit(sae_name, e["features"], e["method"], e.get("value"), e.get("rank", 8)).name
            for e in edits
        ] == names
        multi = 0
        with torch.no_grad():
            for (prompt, edits, heads), replies in seen.items():
                ivs = [Ablate(heads=list(heads))] if heads else []
                probs = torch.softmax(run_with_edits(model, prompt, edits, ivs)[0, -1].float(), -1)
                vals, idx = probs.topk(5)
                multi += len(edits) > 1
                for got_ids, got_probs in replies:
                    assert list(got_ids) == idx.tolist(), (prompt, edits, heads)
                    assert list(got_probs) == pytest.approx(vals.tolist(), abs=1e-5), (prompt, edits, heads)
    finally:
        torch.set_num_threads(before)
    assert multi > 0  # clients ran several edits at once
    print(
        f"{sum(counts)} replies from {N_CLIENTS} clients in {SECONDS:.0f} s; {len(seen)} distinct (prompt, edits, heads) checked"
    )
