"""The dashboard's Plotly figures, built from the tables in :mod:`spermlib.dashboard.tables`.

Every figure takes its colours from :mod:`spermlib.dashboard.palette` and is sized to stay legible in
a third of a 1440 px page (the comparison grid) and on a 390 px phone: titles are short (details go
to a second, smaller title line or the legend), legends sit below the plot, and heat maps keep every
class label. tests/e2e checks the drawn result in a browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from spermlib.dashboard import palette, triage
from spermlib.dashboard.compare import heatmap_grid
from spermlib.dashboard.tables import arch_title
from spermlib.data.datasets import DatasetSpec, get_dataset
from spermlib.store.results import base_arch

T = TypeVar("T")

GRID_COLUMNS = 3  # charts per row at desktop width (Streamlit stacks columns on a phone)
CHART_HEIGHT = 400
LEGEND_BELOW = {"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0}
MARGIN = {"l": 10, "r": 10, "t": 60, "b": 10}


def rows_of(items: Sequence[T], per_row: int = GRID_COLUMNS) -> list[list[T]]:
    """``items`` in rows of at most ``per_row`` (a grid of charts, each wide enough to read)."""
    return [list(items[i:i + per_row]) for i in range(0, len(items), per_row)]


def two_line_title(title: str, detail: str | None = None) -> dict:
    """A short bold title with an optional smaller second line (so that neither is cut off in a narrow chart)."""
    text = f"<b>{title}</b>" + (f"<br><span style='font-size:12px'>{detail}</span>" if detail else "")
    return {"text": text, "x": 0, "xanchor": "left", "font": {"size": 15}}


def confusion_matrix_figure(cells: pd.DataFrame, title: str, normalise: bool) -> go.Figure:
    """One model's confusion matrix (rows true, columns predicted) whose cells can be clicked."""
    names, z, text = heatmap_grid(cells, normalise)
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, colorscale=palette.HEATMAP_SCALE, text=text,
                               texttemplate="%{text}", showscale=False, hoverinfo="skip"))
    # Heat maps are not selectable in plotly: nearly invisible markers on the cell centres are.
    fig.add_trace(go.Scatter(
        x=cells["pred_display"], y=cells["true_display"], mode="markers",
        marker={"size": 40, "symbol": "square", "opacity": 0.01},
        customdata=cells[["true", "pred", "count"]].to_numpy(),
        hovertemplate="true %{y} → predicted %{x}: %{customdata[2]} images<extra>click to open</extra>",
        showlegend=False))
    fig.update_layout(title=two_line_title(title), height=CHART_HEIGHT, margin=MARGIN,
                      xaxis={"title": "predicted", "tickangle": 0, "automargin": True},
                      yaxis={"title": "true", "autorange": "reversed", "automargin": True})
    return fig


def roc_figure(roc: pd.DataFrame, spec: DatasetSpec, title: str, macro_auc: str) -> go.Figure:
    """One-vs-rest ROC curves of one model, a colour per class; the legend holds each class's AUC."""
    curves = roc[["label", "class"]].drop_duplicates()
    colours = {name: palette.class_colour(spec, label) for label, name in zip(curves["label"], curves["class"])}
    fig = px.line(roc, x="fpr", y="tpr", color="class", color_discrete_map=colours,
                  labels={"fpr": "false-positive rate", "tpr": "true-positive rate"})
    fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line={"dash": "dot", "color": palette.REFERENCE_COLOUR})
    fig.update_layout(title=two_line_title(title, f"macro AUC {macro_auc}"), height=CHART_HEIGHT + 60,
                      legend=LEGEND_BELOW, margin=MARGIN)
    fig.update_xaxes(range=[0, 1], constrain="domain")
    fig.update_yaxes(range=[0, 1.02])
    return fig


def fold_accuracy_figure(folds: pd.DataFrame, paper_accuracy: float | None) -> go.Figure:
    """Accuracy of every model on each test fold (grouped bars), the paper's single number dotted."""
    fig = px.bar(folds, x="fold", y="accuracy", color="model", barmode="group", hover_data=["n", "macro_f1"],
                 color_discrete_map=palette.model_colour_map(folds["arch"].unique()),
                 labels={"fold": "test fold", "accuracy": "accuracy", "model": "model"})
    fig.update_yaxes(range=[0, 1.08], tickformat=".0%")
    fig.update_xaxes(dtick=1)  # every fold labelled, also on a phone
    if paper_accuracy is not None:  # its label above the line, where no bar reaches
        fig.add_hline(y=paper_accuracy, line_dash="dot", line_color=palette.PAPER_COLOUR,
                      annotation_text="paper (hold-out)", annotation_position="top right")
    fig.update_layout(height=CHART_HEIGHT + 40, legend=LEGEND_BELOW, margin={**MARGIN, "t": 20})
    return fig


def reliability_figure(rel: pd.DataFrame) -> go.Figure:
    """Reliability diagram: accuracy against mean confidence per bin, one line per model."""
    fig = px.line(rel, x="confidence", y="accuracy", color="model", markers=True, hover_data=["lo", "hi", "count"],
                  color_discrete_map=palette.model_colour_map(rel["arch"].unique()),
                  labels={"confidence": "mean confidence in bin", "accuracy": "accuracy in bin"})
    fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line={"dash": "dot", "color": palette.REFERENCE_COLOUR})
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1])
    fig.update_layout(height=CHART_HEIGHT + 60, legend=LEGEND_BELOW, margin={**MARGIN, "t": 20})
    return fig


SEVERITIES = ("mild", "middle", "strong")


def robustness_figure(report: dict, arch: str) -> go.Figure:
    """Out-of-fold accuracy drop in points (clean minus corrupted) of one arch, per corruption (rows) and
    severity (columns); gains are shown as 0 colour, with their value. One figure per arch, so that a page
    can lay them out in its grid (side by side on a wide screen, one under the other on a phone)."""
    names = list(report["corruptions"])
    rows = report["archs"][arch]["corruptions"]
    z = [[100 * r["accuracy_drop"] for r in rows[n]] for n in names]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(SEVERITIES), y=names, zmin=0, zmax=30, colorscale=palette.DROP_SCALE,
        text=[[f"{round(v, 1) + 0:.1f}" for v in row] for row in z],  # + 0: no "-0.0"
        texttemplate="%{text}", colorbar={"title": {"text": "points lost"}, "thickness": 12},
        hovertemplate=f"{arch_title(arch)}, %{{y}} (%{{x}}): %{{z:.1f}} points lost<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title={"text": arch_title(arch), "font": {"size": 14}}, height=28 * len(names) + 120,
                      margin={**MARGIN, "t": 40})
    return fig


def headline_figure(board: pd.DataFrame) -> go.Figure:
    """Out-of-fold accuracy with its 95 % CI, per model (rows) and dataset (panels), the paper's number
    marked on its model's row. ``board``: :func:`~spermlib.dashboard.headline.default_board` rows (each model
    as the app runs it by default), whose one-view figure, where it is not the lead, is a hollow marker."""
    datasets = list(dict.fromkeys(board["dataset"]))  # the board's order: built-in first, then own datasets
    folders = {d: get_dataset(d).folder for d in datasets}
    fig = make_subplots(rows=len(datasets), cols=1, shared_xaxes=True, vertical_spacing=0.16,
                        subplot_titles=[folders[d] for d in datasets])
    legend = set()  # one legend entry per kind of marker, not one per model
    for row, dataset in enumerate(datasets, start=1):
        for r in board[board["dataset"] == dataset].itertuples(index=False):
            fig.add_trace(_accuracy_marker(r, folders[dataset]), row=row, col=1)
            one_view = getattr(r, "one_view_accuracy_pooled", None)
            if one_view is not None and pd.notna(one_view):
                fig.add_trace(go.Scatter(
                    x=[one_view], y=[r.model], mode="markers", name="one view", legendgroup="one view",
                    showlegend="one view" not in legend,
                    marker={"size": 10, "symbol": "circle-open", "line": {"width": 2},
                            "color": palette.model_colour(base_arch(r.arch))},
                    hovertemplate=f"{r.model}, one view: %{{x:.1%}} (95 % CI {r.one_view_accuracy_ci_lo:.1%}"
                                  f"–{r.one_view_accuracy_ci_hi:.1%})<extra></extra>"), row=row, col=1)
                legend.add("one view")
            if pd.notna(r.paper_accuracy):
                fig.add_trace(go.Scatter(
                    x=[r.paper_accuracy], y=[r.model], mode="markers", name="paper (hold-out split)",
                    legendgroup="paper", showlegend="paper" not in legend,
                    marker={"size": 12, "symbol": "diamond-open", "color": palette.PAPER_COLOUR, "line": {"width": 2}},
                    hovertemplate="paper, single hold-out split: %{x:.1%}<extra></extra>"), row=row, col=1)
                legend.add("paper")
    lo = float(board["accuracy_ci_lo"].min()) if len(board) else 0.5
    fig.update_xaxes(range=[max(0.0, lo - 0.05), 1.0], tickformat=".0%")
    fig.update_xaxes(title_text="accuracy (out-of-fold, 95 % CI)", row=len(datasets), col=1)
    fig.update_yaxes(automargin=True, autorange="reversed")  # the board's order top down: the paper's model first
    fig.update_layout(height=170 + 130 * len(datasets), margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={**LEGEND_BELOW, "y": -0.18})
    return fig


def _accuracy_marker(r, folder: str) -> go.Scatter:
    """One model's pooled out-of-fold accuracy with its bootstrap CI as error bars."""
    return go.Scatter(
        x=[r.accuracy_pooled], y=[r.model], mode="markers", name=r.model, legendgroup=r.model,
        showlegend=False, marker={"size": 12, "color": palette.model_colour(base_arch(r.arch))},  # one colour a model
        error_x={"type": "data", "symmetric": False, "array": [r.accuracy_ci_hi - r.accuracy_pooled],
                 "arrayminus": [r.accuracy_pooled - r.accuracy_ci_lo], "thickness": 2, "width": 6},
        hovertemplate=f"{r.model} on {folder}: %{{x:.1%}} (95 % CI {r.accuracy_ci_lo:.1%}"
                      f"–{r.accuracy_ci_hi:.1%}), {r.n_images} images<extra></extra>")


def probability_figure(probabilities: dict[str, float], predicted: str, spec: DatasetSpec,
                       axis_title: str) -> go.Figure:
    """Horizontal bars of the class probabilities in class colours, the predicted class at full strength."""
    classes = list(spec.class_dirs)
    values = [probabilities[c] for c in classes]
    fig = go.Figure(go.Bar(
        x=values, y=[spec.display(c) for c in classes], orientation="h", text=[f"{v:.1%}" for v in values],
        textposition="auto", marker_color=[palette.class_colour(spec, c) for c in classes],
        marker_opacity=[1.0 if c == predicted else palette.MUTED for c in classes]))
    fig.update_layout(xaxis={"range": [0, 1], "tickformat": ".0%", "title": axis_title},
                      yaxis={"autorange": "reversed", "automargin": True}, height=70 + 40 * len(classes),
                      margin={"l": 10, "r": 10, "t": 10, "b": 40})
    return fig


def normal_share_figure(shares: dict[str, triage.NormalShare]) -> go.Figure:
    """The batch's share of normal forms per model (horizontal bars), the WHO 2021 lower limit dashed."""
    names = [arch_title(a) for a in shares]
    values = [100 * (s.share or 0.0) for s in shares.values()]
    text = [f"{s.n_normal}/{s.n_sperm} = {100 * s.share:.1f} %" if s.share is not None else "no sperm images"
            for s in shares.values()]
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h", text=text, textposition="outside",
                           marker_color=[palette.model_colour(a) for a in shares], cliponaxis=False))
    limit = 100 * triage.WHO_2021_NORMAL_FORMS_LRL
    fig.add_vline(x=limit, line_dash="dash", line_color=palette.LIMIT_COLOUR)
    fig.add_annotation(x=limit, y=1, yref="paper", yanchor="bottom", xanchor="left", showarrow=False,
                       text=f"WHO lower limit ({limit:.0f} %)", font={"color": palette.LIMIT_COLOUR})
    fig.update_layout(xaxis={"range": [0, 100], "title": "normal forms (% of sperm images)"},
                      yaxis={"automargin": True}, height=120 + 50 * len(names),
                      margin={"l": 10, "r": 10, "t": 40, "b": 40})
    return fig
