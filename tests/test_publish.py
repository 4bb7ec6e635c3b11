"""`make publish`: deterministic output, a staleness check, and an HTML report that renders in Chromium."""

import json
import re
import shutil
import subprocess

import pytest
from records import make_record, write_record

from harness.paths import RESULTS_DIR
from harness.publish.build import publish, stale, unpublished


def _results(tmp_path):
    subjects = {"mmlu_llama_anatomy": 135, "mmlu_llama_virology": 166}
    write_record(
        tmp_path,
        make_record(
            "smollm2-135m",
            "gsm8k",
            {"gsm8k_cot_llama": [True] * 3 + [False] * 47},
            sizes={"gsm8k_cot_llama": 1319},
            quant="Q4_1",
            n_params=1.345e8,
        ),
    )
    for q in ("Q4_K_M", "Q8_0"):
        write_record(
            tmp_path,
            make_record(
                "llama3.1-8b-instruct",
                "mmlu",
                {s: [True] * 7 + [False] * 3 for s in subjects},
                sizes=subjects,
                quant=q,
            ),
        )
    return tmp_path


def _snapshot(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_publish_is_deterministic_and_complete(tmp_path):
    a, b = _results(tmp_path / "a"), _results(tmp_path / "b")
    publish(a)
    publish(b)
    sa, sb = _snapshot(a), _snapshot(b)
    assert sa == sb
    for f in (
        "README.md",
        "claims.csv",
        "scores.csv",
        "report.html",
        "published.json",
        "plots/claims-mmlu.png",
        "plots/quant-llama3.1-8b-instruct.png",
    ):
        assert f in sa, f
    assert publish(a) == []  # nothing to rewrite the second time
    readme = (a / "README.md").read_text()
    assert "llama3.1-8b-instruct.mmlu.card" in readme and "no measurement" in readme
    assert "| Q8_0 " in readme and "| Q4_K_M " in readme


def test_stale_check_sees_new_records_and_edits(tmp_path):
    d = _results(tmp_path)
    assert stale(d) == ["published.json"]  # never published
    publish(d)
    assert stale(d) == []
    (d / "README.md").write_text("hand edit\n")
    assert stale(d) == ["README.md"]
    publish(d)
    (d / "plots" / "claims-gsm8k.png").write_bytes(b"not the plot")
    assert stale(d) == ["plots/claims-gsm8k.png"]
    publish(d)
    # A user's new run is not yet published: not stale (`make bench` then `make test` passes), but named.
    new = write_record(
        d, make_record("smollm2-135m", "gsm8k", {"gsm8k_cot_llama": [True] * 10}, quant="Q8_0")
    )
    assert stale(d) == [] and unpublished(d) == [new.name]
    assert "smollm2-135m,Q8_0" not in (d / "scores.csv").read_text()
    publish(d)  # `make publish` takes it in
    assert unpublished(d) == [] and "smollm2-135m,Q8_0" in (d / "scores.csv").read_text()
    assert new.name in json.loads((d / "published.json").read_text())["records"]
    # A record the publication was built from that changes, or goes, makes it stale.
    new.write_text(new.read_text().replace('"run_id": "', '"run_id": "x', 1))
    assert stale(d)[0] == f"runs/{new.name} (changed or missing)"
    new.unlink()
    assert stale(d)[0] == f"runs/{new.name} (changed or missing)"


def test_committed_results_are_not_stale():
    assert stale(RESULTS_DIR) == [], "run `make publish` and commit results/"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# Run in the page by the test only (the published page needs no JavaScript): measures the layout at the
# window's size and writes what it found into the DOM, which --dump-dom returns.
LAYOUT_PROBE = """<script>
window.addEventListener("load", () => {
  const b = document.body, vw = document.documentElement.clientWidth, vh = window.innerHeight;
  const ok = [...document.images].filter((i) => i.complete && i.naturalWidth > 0).length;
  b.dataset.imagesLoaded = String(ok);
  b.dataset.viewport = vw + "x" + vh;
  b.dataset.scrollWidth = String(document.documentElement.scrollWidth);
  // Elements reaching past the viewport, other than those inside a box that scrolls by itself.
  const wide = [...document.querySelectorAll("body *")].filter((e) => !e.closest(".scroll, script, style")
      && e.getBoundingClientRect().right > vw + 0.5).map((e) => e.tagName + (e.id ? "#" + e.id : ""));
  b.dataset.wide = wide.slice(0, 5).join(",") || "none";
  const top = (sel) => document.querySelector(sel).getBoundingClientRect().top;
  const bottom = (sel) => document.querySelector(sel).getBoundingClientRect().bottom;
  b.dataset.headlinesBottom = String(Math.round(bottom("#headlines")));
  b.dataset.judgedTop = String(Math.round(top("#judged")));
  b.dataset.summaryTop = String(Math.round(top("#summary")));
  b.dataset.awaitingTop = String(Math.round(top("#awaiting-claims")));
  b.dataset.order = document.querySelector("#summary").compareDocumentPosition(
      document.querySelector("#awaiting-claims")) & Node.DOCUMENT_POSITION_FOLLOWING ? "summary-first" : "awaiting-first";
});
</script>"""


def _chromium(page, tmp_path, *extra):
    return subprocess.run(
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--enable-logging=stderr",
            "--window-size=1280,800",
            *extra,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(tmp_path):
    """At 1280x800: the summary (headline scores, judged claims) is on the first screen and comes before the
    claims awaiting a measurement; nothing but the long tables' own boxes is wider than the window; every plot
    loads; the page itself has no script."""
    d = _results(tmp_path)
    publish(d)
    html = (d / "report.html").read_text()
    assert "<script" not in html
    page = d / "report-probe.html"  # beside it: the plots' relative paths resolve the same
    page.write_text(html.replace("</body>", LAYOUT_PROBE + "\n</body>"))
    proc = _chromium(page, tmp_path, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    got = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', re.search(r"<body[^>]*>", dom).group(0)))
    # The window is 1280x800; headless Chromium keeps room for its (hidden) toolbars, so the page's own viewport
    # is shorter: the first-screen checks below hold against that shorter height, so at 800 px too.
    width, height = map(int, got["viewport"].split("x"))
    assert width == 1280 and height <= 800, got
    total = int(got["images-total"])
    assert total >= 2 and int(got["images-loaded"]) == total, "a plot failed to load"
    assert got["order"] == "summary-first"
    assert got["wide"] == "none" and int(got["scroll-width"]) <= 1280, got
    assert int(got["summary-top"]) < height and int(got["judged-top"]) < height, got  # the first screen
    assert int(got["headlines-bottom"]) <= height, got
    assert int(got["summary-top"]) < int(got["awaiting-top"]), got
    assert dom.count("<tr data-verdict=") >= 40
    assert "Uncaught" not in proc.stderr and ":CONSOLE(" not in proc.stderr
    shot = tmp_path / "first-screen.png"  # for a person to look at (pytest keeps tmp_path)
    _chromium(page, tmp_path, f"--screenshot={shot}")
    print(f"first screen: {shot}; layout: {got}")


def test_summary_leads_the_readme(tmp_path):
    d = _results(tmp_path)
    publish(d)
    readme = (d / "README.md").read_text()
    order = [
        readme.index(h)
        for h in (
            "## Headline scores",
            "## Judged claims",
            "## Claims awaiting a measurement",
            "## All claims",
        )
    ]
    assert order == sorted(order)
    # Each awaiting group: the command that measures it (its tasks without a run: mmlu has two here) and its
    # estimate on the reference machine class.
    assert "`make bench MODEL=llama3.1-8b-instruct TASKS=gsm8k,mmlu_cot`: Q4_K_M: ~" in readme
    assert "`make bench MODEL=llama3.1-8b TASKS=gsm8k,mmlu`: Q4_K_M: ~" in readme
    assert "does not fit (needs" in readme  # the 70B and 405B on a 24 GiB reference machine
    assert "reference machine class: an idle 2-core machine" in readme
