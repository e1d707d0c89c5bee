"""docs/tutorial.ipynb executed at small size (nbclient, a kernel on this environment's python), as a user would
run it, then its results checked: the summary line it prints, and its exported bundle re-imported here."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

from neuroscope.bundles import import_bundle
from neuroscope.edits import EditHost

pytestmark = pytest.mark.integration
NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "tutorial.ipynb"
MARK = "TUTORIAL_SUMMARY "


def summary_of(nb: nbformat.NotebookNode) -> dict:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for line in str(out.get("text", "")).splitlines():
                if line.startswith(MARK):
                    return json.loads(line[len(MARK) :])
    raise AssertionError("the executed notebook printed no summary line")


def test_tutorial_executes_at_small_size(smollm, tmp_path, monkeypatch):
    out = tmp_path / "test-artifacts" / "tutorial"
    # the parameter cell reads these; the kernel inherits this process's environment
    monkeypatch.setenv("NEUROSCOPE_TUTORIAL_SMALL", "1")
    monkeypatch.setenv("NEUROSCOPE_TUTORIAL_OUT", str(out))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:  # the committed full-size outputs must play no part in the check
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    # "python3" is launched with this interpreter (jupyter_client puts sys.executable for a bare "python");
    # the working directory is docs/, as when the notebook is opened there
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    s = summary_of(nb)
    print(json.dumps(s, indent=1))

    assert s["small"] is True and s["python"] == sys.executable
    assert s["hook"] == "blocks.15.hook_resid_post" and s["d_sae"] == 1152
    # the SAE reconstructs: finite FVU well below 1, exactly k latents active, most of the CE loss recovered
    assert math.isfinite(s["fvu"]) and 0 < s["fvu"] < 1
    assert s["l0"] == 16.0
    assert s["ce_loss_recovered"] > 0.5
    # the chosen feature separates the two sentence sets on held-out sentences
    assert s["feature_auroc"] >= 0.75
    # the lens's last row is the model's own prediction, which this process computes again
    with torch.no_grad():
        plain = torch.softmax(smollm(s["prompt"])[0, -1].float(), -1)
    assert smollm.to_string([int(plain.argmax())]) == s["lens_final_token"] == s["target_token"]
    assert abs(float(plain.max()) - s["p_before"]) < 1e-4
    # the live edits moved the prediction; the set kept only candidates under the cost bound (or the one feature)
    assert abs(s["p_before"] - s["p_after"]) > 1e-3
    assert abs(s["p_before"] - s["p_after_multi"]) > 1e-3
    costs = s["candidate_costs"]
    assert s["multi_features"] and all(math.isfinite(c) and c >= 0 for c in costs.values())
    kept = [int(f) for f, c in costs.items() if c <= 0.5]
    assert s["multi_features"] == (kept or [s["feature"]])

    # the exported bundle verifies and, attached to another model instance, gives the notebook's p_after
    bundle = Path(s["bundle"])
    assert bundle.is_dir() and bundle.is_relative_to(out)
    attached = import_bundle(bundle, smollm, prefix="tutorial-")
    host = EditHost.of(smollm)
    try:
        single, multi = f"no-{s['feature']}", "no-exception-set"
        assert attached.edit_names == {single: f"tutorial-{single}", multi: f"tutorial-{multi}"}
        edits = attached.verified.manifest["edits"]
        assert edits[single]["features"] == [s["feature"]]
        assert edits[multi]["features"] == s["multi_features"]
        for name, expected in ((single, s["p_after"]), (multi, s["p_after_multi"])):
            with torch.no_grad(), host.use([attached.edit_names[name]]):
                edited = torch.softmax(smollm(s["prompt"])[0, -1].float(), -1)
            assert abs(float(edited[int(plain.argmax())]) - expected) < 1e-4
    finally:
        for n in attached.edit_names.values():
            host.remove(n)
