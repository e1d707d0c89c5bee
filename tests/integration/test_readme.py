"""The README's quick commands, run as written after setup: the block marked `<!-- readme-test: quick ...-->` is
read from README.md (so the test breaks when the README drifts) and run by bash in a temporary folder that
holds only `.venv` and `data/corpus`, with nothing of the virtualenv on the PATH: the block's own
`source .venv/bin/activate` has to put the CLI there. The only change is size: `--tokens` is made smaller."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MARK = "<!-- readme-test: quick"
# flag → the value the test runs with (the README's values are for a person with a few minutes)
SIZES = {"--tokens": "4096"}


def quick_blocks(readme: str) -> list[str]:
    """The ```bash blocks that directly follow the marker line."""
    blocks = re.findall(r"^" + re.escape(MARK) + r"[^\n]*-->\n```bash\n(.*?)^```", readme, re.M | re.S)
    assert blocks, f"README.md has no ```bash block after a '{MARK} …-->' line"
    return blocks


def make_targets_run_by_make_test() -> set[str]:
    """The prerequisites of `make test`: they have run before the tests do."""
    line = re.search(r"^test:([^\n]*)$", (ROOT / "Makefile").read_text(), re.M)
    assert line, "the Makefile has no test target"
    return set(line.group(1).split())


def shell_script(block: str) -> tuple[str, list[str]]:
    """The block with smaller sizes and without its `make` lines (returned apart: `make test` ran them)."""
    makes = re.findall(r"^make ([\w-]+)[^\n]*$", block, re.M)
    script = re.sub(r"^make [^\n]*\n", "", block, flags=re.M)
    for flag, value in SIZES.items():
        script, n = re.subn(rf"(?<!\S){flag} \d+", f"{flag} {value}", script)
        assert n, f"the README's quick commands no longer pass {flag}: update SIZES in {__file__}"
    return script, makes


def test_the_readmes_quick_commands_run_as_written(real_corpus, tmp_path):
    assert sys.prefix != sys.base_prefix, "run the tests from the project's virtualenv (make test)"
    script, makes = shell_script("\n".join(quick_blocks((ROOT / "README.md").read_text())))
    assert set(makes) <= make_targets_run_by_make_test(), makes
    assert "neuroscope " in script and "source .venv/bin/activate" in script
    (tmp_path / ".venv").symlink_to(sys.prefix)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "corpus").symlink_to(real_corpus)
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(
        p
        for p in os.environ.get("PATH", "").split(os.pathsep)
        if Path(p).resolve() != Path(venv_bin).resolve()
    )
    env = {**os.environ, "PATH": path, "OMP_NUM_THREADS": "1"}
    env.pop("VIRTUAL_ENV", None)
    p = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    # every folder the block writes is there, and the recording has the size the test asked for
    outs = re.findall(r"--out (\S+)", script)
    assert outs
    for out in outs:
        assert any((tmp_path / out).iterdir()), out
    traced = [tmp_path / o for o in outs if (tmp_path / o / "manifest.json").exists()]
    for folder in traced:
        manifest = json.loads((folder / "manifest.json").read_text())
        assert sum(s["rows"] for s in manifest["shards"]) == int(SIZES["--tokens"])
    assert "n_layers" in p.stdout
