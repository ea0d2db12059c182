"""A sample's report, as PDF (fpdf2) and HTML from the same content.

Content: the sample's identity (name, task, models and their checkpoint digests, code version), counts per
class by the model and after review, the share of normal forms after review with its 95 % Wilson
confidence interval (statsmodels ``proportion_confint``) against the WHO 2021 lower reference limit (4 %),
how many cells were assessed against the 200 WHO recommends, a warning block for out-of-domain images,
thumbnails with the model's Grad-CAM++ for every reviewed image, the model card (arch, backbone, training
data, cross-validated accuracy with its CI from ``metrics.json``), and that this is decision support, not
a diagnosis. :func:`build_report` gathers everything (the only step that reads the database or runs a
model); :func:`sections` turns it into text that both renderers lay out alike.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from PIL import Image

from spermlib.data.datasets import DatasetSpec, get_dataset
from spermlib.errors import SpermlibError
from spermlib.fileio import write_bytes, write_text
from spermlib.samples.service import ImageRecord, SampleStore, SampleSummary
from spermlib.store.results import ResultsError, load_metrics
from spermlib.vocabulary import NORMAL_LABEL, WHO_2021_NORMAL_FORMS_LRL, arch_title, normal_share

if TYPE_CHECKING:
    from spermlib.inference.predict import Predictor

WHO_RECOMMENDED_CELLS = 200  # WHO 2021: assess at least 200 spermatozoa for morphology
CI_LEVEL = 0.95
THUMB_SIDE = 128
MAX_THUMBS = 48  # reviewed images shown with their Grad-CAM++ (the rest are counted)
DISCLAIMER = ("Decision support, not a diagnosis: the model's labels and this report assist a trained "
              "andrologist and do not replace a semen analysis by the laboratory.")
FONT_FILES = (Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
              Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"))


class _Verdict(NamedTuple):
    """What ``vocabulary.normal_share`` reads of a verdict."""

    label: str | None
    in_domain: bool | None = None
    error: str | None = None


@dataclass(frozen=True)
class Share:
    n_normal: int
    n_assessed: int  # cells classified as sperm (Non-Sperm left out)
    low: float | None = None
    high: float | None = None

    @property
    def share(self) -> float | None:
        return self.n_normal / self.n_assessed if self.n_assessed else None


@dataclass(frozen=True)
class Thumb:
    file_name: str
    model_label: str
    confidence: float
    reviewed_label: str
    reviewer: str
    comment: str | None
    image_png: bytes
    cam_png: bytes | None = None


@dataclass
class SampleReport:
    summary: SampleSummary
    spec: DatasetSpec
    images: list[ImageRecord]
    counts: list[tuple[str, int, int]]  # (class display name, by model, after review)
    share_model: Share | None
    share_reviewed: Share | None
    out_of_domain: list[str]
    domain_assessed: bool
    thumbs: list[Thumb] = field(default_factory=list)
    thumb_note: str = ""
    model_card: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # records that could not be read, skipped
    generated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def n_reviewed(self) -> int:
        return sum(bool(i.reviews) for i in self.images)


# ----------------------------------------------------------------------------------------- numbers


def wilson_share(n_normal: int, n_assessed: int) -> Share:
    """The share with its 95 % Wilson interval (no interval without cells)."""
    if not n_assessed:
        return Share(n_normal, n_assessed)
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(n_normal, n_assessed, alpha=1 - CI_LEVEL, method="wilson")
    return Share(n_normal, n_assessed, float(low), float(high))


def _share(spec: DatasetSpec, verdicts: list[_Verdict]) -> Share | None:
    if spec.name not in NORMAL_LABEL:
        return None  # a task without a normal class
    counted = normal_share(verdicts, spec)
    return wilson_share(counted.n_normal, counted.n_sperm)


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def share_text(share: Share) -> str:
    """E.g. ``1 of 3 cells normal = 33.3 % (95 % CI 6.1 % to 79.2 %, Wilson)``."""
    if share.share is None:
        return "no cell was classified as sperm"
    return (f"{share.n_normal} of {share.n_assessed} cells normal = {pct(share.share)} "
            f"(95 % CI {pct(share.low)} to {pct(share.high)}, Wilson)")


def who_verdict(share: Share) -> str:
    limit = pct(WHO_2021_NORMAL_FORMS_LRL)
    if share.share is None:
        return f"No comparison with the WHO 2021 lower reference limit ({limit})."
    if share.high < WHO_2021_NORMAL_FORMS_LRL:
        return f"Below the WHO 2021 lower reference limit of {limit}: the whole 95 % CI lies under it."
    if share.low >= WHO_2021_NORMAL_FORMS_LRL:
        return f"At or above the WHO 2021 lower reference limit of {limit}: the whole 95 % CI lies over it."
    return (f"The 95 % CI includes the WHO 2021 lower reference limit of {limit}: these cells cannot place the "
            "sample above or below it.")


# ----------------------------------------------------------------------------------------- gathering


def _png(rgb, side: int = THUMB_SIDE) -> bytes:
    img = Image.fromarray(rgb) if not isinstance(rgb, Image.Image) else rgb
    img = img.convert("RGB")
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _thumbs(store: SampleStore, report: SampleReport, predictor: Predictor | None) -> None:
    """Thumbnails of the reviewed images with the model's Grad-CAM++ for its own class (when a model is
    available: the report names why not otherwise)."""
    from spermlib.data.imageio import ImageError, load_rgb

    arch = report.summary.arch
    reviewed = [i for i in report.images if i.reviews and arch in i.predictions]
    for img in reviewed[:MAX_THUMBS]:
        pred, review = img.predictions[arch], img.latest_review
        try:
            rgb = load_rgb(store.image_bytes(report.summary.name, img.file_name), name=img.file_name)
        except ImageError as err:  # one unreadable stored image: named and left out, the rest is reported
            report.problems.append(f"sample {report.summary.name!r}, image {img.file_name!r} (id {img.id}): the "
                                   f"stored image does not decode ({err}); its thumbnail is left out")
            continue
        cam = None
        if predictor is not None:
            from spermlib.inference.explain import Explainer, overlay

            exp = Explainer(predictor).explain(rgb, class_idx=predictor.classes.index(pred.label))
            cam = _png(overlay(exp.rgb, exp.gradcam, alpha=0.5))
        report.thumbs.append(Thumb(img.file_name, report.spec.display(pred.label), pred.confidence,
                                   report.spec.display(review.label), review.reviewer, review.comment, _png(rgb), cam))
    if len(reviewed) > MAX_THUMBS:
        report.thumb_note = f"The first {MAX_THUMBS} of {len(reviewed)} reviewed images are shown."


def _model_card(summary: SampleSummary, spec: DatasetSpec, results_dir: Path | None) -> list[tuple[str, str]]:
    arch = summary.arch
    digests = summary.checkpoints.get(arch, {}).get("weights_sha256", {})
    rows = [("Model", f"{arch_title(arch)} ({arch}), fold ensemble of {len(digests)} model(s)"),
            ("Checkpoints (weights sha256)", ", ".join(f"fold {k}: {v[:12]}" for k, v in digests.items() if v)),
            ("Training data", f"{spec.title}; {spec.citation}")]
    try:
        metrics = load_metrics(spec, results_dir)
    except ResultsError as err:
        return [*rows, ("Cross-validated accuracy", f"unavailable ({err})")]
    entry = (metrics or {}).get("archs", {}).get(arch)
    if not entry:
        return [*rows, ("Cross-validated accuracy", f"not evaluated: run `spermlib evaluate --dataset "
                                                    f"{spec.name}`")]
    acc, f1 = entry["accuracy"], entry["macro_f1"]
    weights = entry.get("pretrained_source", "?")
    return [*rows, ("Backbone", f"{entry.get('backbone', '?')} (ImageNet weights: {weights})"),
            ("Cross-validated accuracy", f"{pct(acc['mean'])} ± {pct(acc['std'])} over folds (95 % CI "
                                         f"{pct(acc['ci95'][0])} to {pct(acc['ci95'][1])}), macro-F1 {f1['mean']:.3f}, "
                                         f"{entry.get('n_images', '?')} images out of fold"),
            ("Protocol", metrics.get("protocol", ""))]


def _load_predictor(spec: DatasetSpec, arch: str, checkpoints_dir: Path | None) -> tuple[Predictor | None, str]:
    try:
        from spermlib.inference.predict import Predictor

        return Predictor.from_checkpoints(spec, arch=arch, checkpoints_dir=checkpoints_dir), ""
    except SpermlibError as err:
        return None, f"No Grad-CAM++: {err}"


def build_report(store: SampleStore, name: str, predictor: Predictor | None = None,
                 checkpoints_dir: Path | None = None, results_dir: Path | None = None,
                 with_cams: bool = True) -> SampleReport:
    """Everything the report shows. ``predictor`` (else loaded from ``checkpoints_dir``) draws the
    Grad-CAM++ of the reviewed images; ``with_cams=False`` skips them (no torch)."""
    detail = store.sample(name)
    summary, images = detail.summary, detail.images
    spec, arch = get_dataset(summary.dataset), summary.arch
    by_model = Counter(i.predictions[arch].label for i in images if arch in i.predictions)
    after = Counter(i.final_label(arch) for i in images)
    counts = [(spec.display(c), by_model[c], after[c]) for c in spec.class_dirs]
    predicted = [i for i in images if arch in i.predictions]
    flags = [(i.file_name, i.predictions[arch].in_domain) for i in predicted]
    report = SampleReport(
        summary=summary, spec=spec, images=images, counts=counts,
        share_model=_share(spec, [_Verdict(i.predictions[arch].label, i.predictions[arch].in_domain)
                                  for i in predicted]),
        share_reviewed=_share(spec, [_Verdict(i.final_label(arch), i.predictions[arch].in_domain
                                              if arch in i.predictions else None) for i in images]),
        out_of_domain=[f for f, ok in flags if ok is False], domain_assessed=any(ok is not None for _, ok in flags),
        model_card=_model_card(summary, spec, results_dir), problems=list(detail.problems))
    note = ""
    if with_cams and predictor is None and any(i.reviews for i in images):
        predictor, note = _load_predictor(spec, arch, checkpoints_dir)
    _thumbs(store, report, predictor if with_cams else None)
    report.thumb_note = " ".join(t for t in (report.thumb_note, note) if t)
    return report


# ----------------------------------------------------------------------------------------- text


@dataclass(frozen=True)
class Section:
    heading: str
    lines: list[str] = field(default_factory=list)
    table: list[tuple[str, ...]] = field(default_factory=list)  # first row: the header
    warning: bool = False


def _ood_section(report: SampleReport) -> Section:
    if not report.domain_assessed:
        return Section("Out-of-domain check", ["The out-of-domain check was not run for these predictions."])
    if not report.out_of_domain:
        return Section("Out-of-domain check", ["Every image looks like the training data (in domain)."])
    return Section("Warning: images outside the models' domain",
                   [f"{len(report.out_of_domain)} image(s) do not look like the {report.spec.title} training data; "
                    "their labels are unreliable and need an expert's review:",
                    ", ".join(report.out_of_domain)], warning=True)


def _share_section(report: SampleReport) -> Section:
    if report.share_reviewed is None:
        return Section("Normal forms", [f"The {report.spec.name} task has no normal class."])
    reviewed, model = report.share_reviewed, report.share_model
    lines = [f"After review: {share_text(reviewed)}.", who_verdict(reviewed),
             f"By the model alone: {share_text(model)}.",
             f"Cells assessed: {reviewed.n_assessed} of the {WHO_RECOMMENDED_CELLS} spermatozoa WHO 2021 recommends "
             "assessing" + (" (too few for a morphology assessment)." if reviewed.n_assessed < WHO_RECOMMENDED_CELLS
                            else ".")]
    return Section("Normal forms (WHO 2021)", lines)


def sections(report: SampleReport) -> list[Section]:
    """The report's text, in order (the thumbnails follow the last section)."""
    s = report.summary
    identity = [("Sample", s.name), ("Task", f"{report.spec.title} ({s.dataset})"),
                ("Created", f"{s.created_at:%Y-%m-%d %H:%M} UTC"), ("Images", f"{s.n_images} ({report.n_reviewed} "
                                                                          "reviewed by an expert)"),
                ("Classified by", ", ".join(arch_title(a) for a in s.checkpoints) or s.arch),
                ("Code version", s.code_version), ("Report generated", f"{report.generated_at:%Y-%m-%d %H:%M} UTC")]
    return [
        Section("Sample", table=[("", ""), *identity]),
        Section("Counts per class", table=[("class", f"by the model ({arch_title(s.arch)})", "after review"),
                                           *[(c, str(a), str(b)) for c, a, b in report.counts]]),
        _share_section(report),
        _ood_section(report),
        Section("Model card", table=[("", ""), *report.model_card]),
        Section("Reviewed images", [report.thumb_note or "Model input and the model's Grad-CAM++ for its own class."]
                if report.thumbs else ["No image has been reviewed yet."]),
        *([Section("Records that could not be read (left out)", list(report.problems), warning=True)]
          if report.problems else []),
    ]


def thumb_caption(t: Thumb) -> str:
    comment = f" ({t.comment})" if t.comment else ""
    return f"{t.file_name}: model {t.model_label} ({t.confidence:.0%}); reviewed {t.reviewed_label} by {t.reviewer}" \
           f"{comment}"


# ----------------------------------------------------------------------------------------- HTML


def _html_table(rows: list[tuple[str, ...]]) -> str:
    head, *body = rows
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head) if any(head) else ""
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table>{f'<tr>{th}</tr>' if th else ''}{trs}</table>"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(report: SampleReport) -> str:
    parts = [f"<h1>Sample report: {html.escape(report.summary.name)}</h1>",
             f"<p class='disclaimer'><strong>{html.escape(DISCLAIMER)}</strong></p>"]
    for sec in sections(report):
        parts.append(f"<section class='{'warning' if sec.warning else ''}'><h2>{html.escape(sec.heading)}</h2>")
        parts += [f"<p>{html.escape(line)}</p>" for line in sec.lines]
        parts += [_html_table(sec.table)] if sec.table else []
        parts.append("</section>")
    for t in report.thumbs:
        cam = f"<img alt='Grad-CAM++' src='{_data_uri(t.cam_png)}'>" if t.cam_png else ""
        parts.append(f"<figure><img alt='{html.escape(t.file_name)}' src='{_data_uri(t.image_png)}'>{cam}"
                     f"<figcaption>{html.escape(thumb_caption(t))}</figcaption></figure>")
    parts.append(f"<p class='disclaimer'>{html.escape(DISCLAIMER)}</p>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#1E2A36}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccd;padding:.2em .5em;text-align:left}"
             ".warning{background:#fff4e5;border-left:4px solid #c77700;padding:.5em}"
             ".disclaimer{background:#F1F4F8;padding:.5em}figure{display:inline-block;margin:.5em}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Sample report: "
            f"{html.escape(report.summary.name)}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>")


# ----------------------------------------------------------------------------------------- PDF


def _pdf_fonts(pdf) -> tuple[str, callable]:
    """A Unicode font when DejaVu is installed, else Helvetica with text folded to Latin-1."""
    if all(f.is_file() for f in FONT_FILES):
        pdf.add_font("DejaVu", "", str(FONT_FILES[0]))
        pdf.add_font("DejaVu", "B", str(FONT_FILES[1]))
        return "DejaVu", str
    return "Helvetica", lambda text: text.encode("latin-1", "replace").decode("latin-1")


def _pdf_section(pdf, sec: Section, font: str, clean) -> None:
    pdf.set_font(font, "B", 12)
    if sec.warning:
        pdf.set_text_color(170, 80, 0)
    pdf.multi_cell(0, 7, clean(sec.heading), new_x="LMARGIN", new_y="NEXT", align="L")
    pdf.set_font(font, "", 9)
    for line in sec.lines:
        pdf.multi_cell(0, 5, clean(line), new_x="LMARGIN", new_y="NEXT", align="L")
    pdf.set_text_color(30, 42, 54)
    if sec.table:
        head, *body = sec.table
        widths = (1, 3) if len(head) == 2 else None  # key–value tables: a narrow key column
        with pdf.table(first_row_as_headings=any(head), line_height=5, text_align="LEFT", col_widths=widths) as table:
            for row in ([head] if any(head) else []) + body:
                cells = table.row()
                for value in row:
                    cells.cell(clean(value))
    pdf.ln(3)


def _pdf_thumbs(pdf, report: SampleReport, font: str, clean) -> None:
    side_mm = 30
    for t in report.thumbs:
        if pdf.get_y() + side_mm + 12 > pdf.h - pdf.b_margin:
            pdf.add_page()
        y = pdf.get_y()
        pdf.image(io.BytesIO(t.image_png), x=pdf.l_margin, y=y, w=side_mm)
        if t.cam_png:
            pdf.image(io.BytesIO(t.cam_png), x=pdf.l_margin + side_mm + 2, y=y, w=side_mm)
        pdf.set_xy(pdf.l_margin + 2 * side_mm + 6, y)
        pdf.multi_cell(0, 5, clean(thumb_caption(t)), new_x="LMARGIN", new_y="NEXT", align="L")
        pdf.set_y(y + side_mm + 3)


def render_pdf(report: SampleReport) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_title(f"Sample report: {report.summary.name}")
    pdf.set_auto_page_break(True, margin=15)
    font, clean = _pdf_fonts(pdf)
    pdf.add_page()
    pdf.set_text_color(30, 42, 54)
    pdf.set_font(font, "B", 16)
    pdf.multi_cell(0, 9, clean(f"Sample report: {report.summary.name}"), new_x="LMARGIN", new_y="NEXT", align="L")
    pdf.set_font(font, "B", 9)
    pdf.multi_cell(0, 5, clean(DISCLAIMER), new_x="LMARGIN", new_y="NEXT", align="L")
    pdf.ln(3)
    for sec in sections(report):
        _pdf_section(pdf, sec, font, clean)
    pdf.set_font(font, "", 8)
    _pdf_thumbs(pdf, report, font, clean)
    pdf.set_font(font, "B", 9)
    pdf.multi_cell(0, 5, clean(DISCLAIMER), new_x="LMARGIN", new_y="NEXT", align="L")
    return bytes(pdf.output())


def write_report(report: SampleReport, out: Path) -> Path:
    """Write the PDF or HTML report, by ``out``'s suffix, atomically: a failure (a full disk) leaves an
    earlier report there intact and raises one :class:`~spermlib.fileio.OutputError` naming ``out``."""
    out = Path(out)
    if out.suffix.lower() == ".pdf":
        write_bytes(out, render_pdf(report))
    elif out.suffix.lower() in (".html", ".htm"):
        write_text(out, render_html(report))
    else:
        raise SpermlibError(f"{out}: a report is .pdf or .html")
    return out
