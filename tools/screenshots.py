"""Screenshots of every dashboard page, as a stakeholder opens it, and the chart-legibility check.

``python -m tools.screenshots [OUT_DIR] [--data bundled|full|both]`` starts ``streamlit run app.py``
headless on a free port and drives Debian's Chromium (``/usr/bin/chromium``; Playwright's own browser
download is not needed) through every page at 1440 px (desktop) and 390 px (phone) width, plus the key
states: Classify with three bundled samples and all models side by side, a confusion-matrix cell opened
in the misclassification explorer, and a mistake selected with its maps. PNGs go to
``OUT_DIR/<data>/`` (default ``test-artifacts/screenshots/``, git-ignored); ``--data full`` points the
app at ``../shared/data`` ($SPERM_DATA_DIR). The installed checkpoints and results are used (the
repository's, unless $SPERMLIB_CHECKPOINTS / $SPERMLIB_RESULTS say otherwise).

Every shot is checked with :func:`chart_problems` (charts too narrow, clipped titles, heat maps without
all their class labels) and for Streamlit exception boxes; a summary is printed and the exit status is
1 when something is wrong. The server and browser driver is :mod:`spermlib.evaluation.browser` (the speed
benchmark's browser rows use it too); tests/e2e/test_browser.py uses the same server and checks.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

if not __package__:  # `python tools/screenshots.py` as well as `python -m tools.screenshots`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spermlib.evaluation.browser import (  # noqa: E402  (after the path fix above)
    CHROMIUM,
    PAGE_LOAD_MS,
    classify_url,
    launch,
    open_page,
    settle,
    streamlit_server,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "test-artifacts" / "screenshots"
FULL_DATA_DIR = "../shared/data"  # relative to the repository root, where the server runs
DESKTOP, PHONE = 1440, 390
WIDTHS = (DESKTOP, PHONE)
MIN_CHART_WIDTH = 250  # px: narrower than this, a chart's labels collide or vanish
MIN_HEATMAP_SIDE = 120  # px: a confusion matrix whose cells and numbers can be read
PAGES = ("", "explorer", "classify", "compare", "mistakes", "embedding", "samples")  # URL paths ("" = Overview)
MAX_SHOT_HEIGHT = 12_000


def select_box(page, label: str):
    """The select box whose label is exactly ``label``."""
    return page.get_by_test_id("stSelectbox").filter(has=page.get_by_text(label, exact=True)).first


def open_options(page, label: str):
    """Open the select box labelled ``label``; its options (role "option") once they are shown."""
    select_box(page, label).get_by_role("combobox").click()
    page.keyboard.press("ArrowDown")  # Streamlit's combo box opens its list from the keyboard
    options = page.get_by_role("option")
    options.first.wait_for(timeout=30_000)
    return options


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the select box labelled ``label`` and wait for the rerun."""
    open_options(page, label).filter(has_text=option).first.click()
    settle(page)


def flip(page, label: str) -> None:
    """Click the toggle (or check box) labelled ``label``, turning it on if it was off and off if it was on, and
    wait for the rerun."""
    page.get_by_text(label, exact=True).click()
    settle(page)


def full_page_shot(page, path: Path, width: int) -> None:
    """Streamlit scrolls inside its main block: grow the viewport to the content, shoot, shrink back."""
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": width, "height": min(max(height, 800), MAX_SHOT_HEIGHT)})
    page.wait_for_timeout(1200)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": width, "height": 1000})


# What a reader of a chart needs, from the drawn SVG: the chart's width, titles inside the chart, every
# class label on both axes of a heat map and a heat map large enough to read.
_CHART_CHECK = """([minWidth, minSide]) => {
  const problems = [];
  const visible = el => { const b = el.getBoundingClientRect(); return b.width > 0 && b.height > 0; };
  document.querySelectorAll('.js-plotly-plot').forEach((gd, n) => {
    const box = gd.getBoundingClientRect();
    const title = gd.layout && gd.layout.title && gd.layout.title.text;
    const name = `chart ${n + 1}` + (title ? ` "${title.replace(/<[^>]*>/g, ' ').trim()}"` : '');
    if (box.width < minWidth) problems.push(`${name}: ${Math.round(box.width)} px wide (< ${minWidth})`);
    const svg = gd.querySelector('svg.main-svg');
    if (!svg) { problems.push(`${name}: not drawn`); return; }
    const s = svg.getBoundingClientRect();
    gd.querySelectorAll('.gtitle, .g-gtitle text, .xtitle, .ytitle, .annotation-text').forEach(t => {
      const b = t.getBoundingClientRect();
      if (visible(t) && (b.left < s.left - 1 || b.right > s.right + 1 || b.top < s.top - 1))
        problems.push(`${name}: "${t.textContent}" is clipped (${Math.round(b.left - s.left)}..` +
                      `${Math.round(b.right - s.left)} px of ${Math.round(s.width)})`);
    });
    (gd.data || []).forEach(trace => {
      if (trace.type !== 'heatmap') return;
      const ticks = axis => new Set([...gd.querySelectorAll(`.${axis}tick text`)].filter(visible)
                                     .map(t => t.textContent.trim()));
      for (const [axis, labels] of [['x', trace.x], ['y', trace.y]]) {
        const shown = ticks(axis);
        const missing = (labels || []).map(String).filter(l => !shown.has(l));
        if (missing.length) problems.push(`${name}: heat map lacks ${axis} labels ${missing.join(', ')}`);
      }
      gd.querySelectorAll('.hm image').forEach(img => {
        const b = img.getBoundingClientRect();
        if (b.width < minSide || b.height < minSide)
          problems.push(`${name}: heat map drawn ${Math.round(b.width)} × ${Math.round(b.height)} px`);
      });
    });
  });
  return problems;
}"""


def chart_problems(page) -> list[str]:
    """What is wrong with the Plotly charts on the page, as sentences (empty: every chart is legible)."""
    return page.evaluate(_CHART_CHECK, [MIN_CHART_WIDTH, MIN_HEATMAP_SIDE])


def exception_texts(page) -> list[str]:
    return [e.inner_text()[:500] for e in page.locator("[data-testid='stException']").all()]


# ------------------------------------------------------------------------------------------ the tour


@dataclass
class Report:
    shots: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def check(self, page, shot: Path) -> None:
        self.shots.append(shot)
        found = [*chart_problems(page), *(f"exception: {t}" for t in exception_texts(page))]
        self.problems += [f"{shot.name}: {p}" for p in found]
        print(f"{shot}: {'OK' if not found else '; '.join(found)}", flush=True)


def three_samples(dataset: str = "smids") -> list[str]:
    """One bundled sample per class (the first of each class folder): paths relative to the sample root."""
    from spermlib.data.datasets import SAMPLE_DATA_ROOT, get_dataset, list_images

    spec = get_dataset(dataset)
    images = list_images(spec, SAMPLE_DATA_ROOT / spec.folder)
    return [images.loc[images["label"] == c, "path"].min() for c in spec.class_dirs][:3]


def open_cell_in_mistakes(page, base: str) -> None:
    """Comparison page → "Open these images" (the default cell: the paper's model's largest error)."""
    open_page(page, base, "compare")
    page.get_by_role("button", name="Open these images").click()
    page.get_by_role("heading", name="Misclassification explorer").first.wait_for(timeout=60_000)
    settle(page)


def select_second_mistake(page, base: str) -> None:
    """Misclassification explorer → the second image of its "Image" list (the first is shown by default)."""
    open_page(page, base, "mistakes")
    options = open_options(page, "Image")
    options.nth(min(1, options.count() - 1)).click()
    settle(page)


# Screenshot name → how to get there (page, base URL).
STATES = {
    **{path or "overview": (lambda page, base, path=path: open_page(page, base, path)) for path in PAGES},
    "classify-3-samples-all-models": lambda page, base: open_page(page, base, classify_url(three_samples())),
    "mistakes-from-confusion-cell": open_cell_in_mistakes,
    "mistakes-selected-with-maps": select_second_mistake,
}


def tour(page, base: str, out: Path, width: int, report: Report, names: list[str]) -> None:
    """The states ``names`` (keys of ``STATES``) at one width, each shot and checked."""
    page.set_viewport_size({"width": width, "height": 1000})
    for name in names:
        STATES[name](page, base)
        shot = out / f"{name}-{width}.png"
        full_page_shot(page, shot, width)
        report.check(page, shot)


def run(out: Path, data: str, names: list[str], widths: list[int]) -> Report:
    from playwright.sync_api import sync_playwright

    from spermlib.data.datasets import DATA_DIR_ENV

    report = Report()
    settings = {"bundled": {DATA_DIR_ENV: None}, "full": {DATA_DIR_ENV: FULL_DATA_DIR}}
    chosen = list(settings) if data == "both" else [data]
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            for name in chosen:
                folder = out / name
                with streamlit_server(settings[name], folder / "server.log") as base:
                    context = browser.new_context(viewport={"width": DESKTOP, "height": 1000})
                    page = context.new_page()
                    page.set_default_timeout(PAGE_LOAD_MS)
                    for width in widths:
                        tour(page, base, folder, width, report, names)
                    context.close()
        finally:
            browser.close()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT, help="folder for the PNGs")
    parser.add_argument("--data", choices=["bundled", "full", "both"], default="both",
                        help="bundled sample, the full data in ../shared/data, or both (default)")
    parser.add_argument("--shots", nargs="+", choices=list(STATES), default=list(STATES), metavar="NAME",
                        help=f"only these screenshots (default: all): {', '.join(STATES)}")
    parser.add_argument("--widths", nargs="+", type=int, default=list(WIDTHS), help="viewport widths in px")
    args = parser.parse_args(argv)
    if not CHROMIUM.is_file():
        print(f"{CHROMIUM} not found (apt-get install chromium)", file=sys.stderr)
        return 2
    report = run(args.out.resolve(), args.data, args.shots, args.widths)
    print(f"\n{len(report.shots)} screenshots in {args.out}; {len(report.problems)} problem(s)")
    for problem in report.problems:
        print(" -", problem)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
