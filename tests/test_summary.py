"""`dlx summary`: shapes from a real forward pass, counts from the modules."""
from __future__ import annotations

import subprocess
import sys

from dlx.config import load_config
from dlx.summary import model_summary

from conftest import CONFIGS


def test_mlp_summary_counts_match_the_formula_and_the_model(tiny):
    tiny["model"] = {"name": "mlp", "widths": [16, 8]}
    tiny["regularization"] = {"norm": "batch"}
    s = model_summary(load_config(tiny))
    rows = {r["name"]: r for r in s["layers"]}
    assert rows["fc1"]["params"] == (2 + 1) * 16
    assert rows["fc2"]["params"] == (16 + 1) * 8
    assert rows["out"]["params"] == (8 + 1) * 3
    assert rows["bn1"]["params"] == 2 * 16
    assert rows["fc2"]["output"] == [2, 8] and s["output"] == [2, 3]
    assert s["total_params"] == sum(r["params"] for r in s["layers"])
    assert [r["name"] for r in s["layers"]][:3] == ["fc1", "bn1", "act1"]


def test_summary_command_prints_layers_and_total():
    p = subprocess.run([sys.executable, "-m", "dlx", "summary", str(CONFIGS / "quickstart.yaml")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "fc1" in p.stdout and "total parameters: 8,707" in p.stdout
