"""Pages that show no model never import torch (importing it costs seconds of the first page load).

Runs the app in a fresh interpreter (this test process has imported torch already) through Dataset
explorer and Model comparison (opened first, as a bookmarked link would), then the Overview, whose
worked example is read from what `spermlib example` stored, and Classify given a bundled sample, which
loads a model (Classify imports torch only then: its first screen, before an image is given, is torch-free too).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import json, sys
from streamlit.testing.v1 import AppTest
from spermlib.dashboard.resources import bundled_samples

at = AppTest.from_file("app.py", default_timeout=180)
seen = []
for page in ("views/explorer.py", "views/compare.py", "views/overview.py", "views/classify.py"):
    if page == "views/classify.py":
        at.session_state["classify_samples_request"] = bundled_samples("smids")[:1]
    at.switch_page(page).run()
    assert not at.exception, at.exception
    seen.append((at.title[0].value, len(at.dataframe), "torch" in sys.modules))
print(json.dumps(seen))
"""


def test_explorer_comparison_and_overview_do_not_import_torch(app_env):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # app_env and conftest set the folders and the raise switch
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    titles = [t for t, _, _ in seen]
    assert titles == ["Dataset explorer", "Model comparison", "Interpretable sperm-morphology classification",
                      "Classify sperm images"]
    assert all(n_tables > 0 for _, n_tables, _ in seen[:3])  # the pages really rendered their tables
    assert [torch for _, _, torch in seen][:3] == [False, False, False]
    assert seen[3][2]  # the check can see torch arrive
