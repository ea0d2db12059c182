"""The placeholder dashboard renders on the bundled data and says what it found."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def test_overview_renders_and_reports_data():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert "Interpretable sperm-morphology classification" in at.title[0].value
    table = at.dataframe[0].value
    assert len(table) == 2
    assert table["data"].str.contains("images").all()
    citations = " ".join(m.value for m in at.markdown)
    assert "doi:10.17632/6xvdhc9fyb.1" in citations and "doi:10.17632/tt3yj2pf38.3" in citations
