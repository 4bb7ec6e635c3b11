"""Regenerate the example outputs in README.md and docs/*.md from the commands themselves (issue #29), so
that what the pages show cannot drift from what the commands print.

    .venv/bin/python scripts/readme_examples.py           # rewrite every stale example in place
    .venv/bin/python scripts/readme_examples.py --check   # exit 1 naming each stale example (tests/test_docs.py)

An example is a fenced block right after a marker naming the command, closed by an end marker:

    <!-- example: harness models -->
    ```text
    ...what `harness models` prints...
    ```
    <!-- /example -->

The command (a `harness` subcommand, run through this checkout's installed entry point) runs on a pretended,
fixed machine so that its output is the same everywhere: offline (HF_HUB_OFFLINE=1), an empty Hugging Face
cache (nothing downloaded but the offline model, which ships in a Python package), 20 GiB of RAM available,
no GPU, 200 GiB of free disk (the variables `harness plan` and the preflight read; see docs/usage.md), and
the published records only (those `results/published.json` lists, as HARNESS_RESULTS_DIR): a user's own runs
in `results/runs/` change neither the pages nor this check. Only commands that read no measurement of this
machine belong here: `harness plan` with `--rates reference`, not the default probe of this machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = Path(sys.executable).parent / "harness"
# The marker, its fenced block (any info string), the end marker.
BLOCK = re.compile(
    r"(<!-- example: (?P<cmd>[^>]+?) -->\n```[a-z]*\n)(?P<body>.*?)(```\n<!-- /example -->)", re.S
)
PRETEND = {
    "HF_HUB_OFFLINE": "1",
    "HARNESS_MEMORY_AVAILABLE": "20GiB",
    "HARNESS_GPU_FREE": "none",
    "HARNESS_DISK_FREE": "200GiB",
}
CACHE_SHOWN = "~/.cache/huggingface/hub"  # what the empty cache's path is printed as


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def published_results(dest: Path) -> Path:
    """A results folder holding links to the published records (results/published.json) and nothing else."""
    results = ROOT / "results"
    runs = dest / "runs"
    runs.mkdir(parents=True)
    for name in json.loads((results / "published.json").read_text())["records"]:
        for f in (name, name.removesuffix(".json") + ".lm_eval.json"):
            if (results / "runs" / f).is_file():
                (runs / f).symlink_to(results / "runs" / f)
    return dest


def run(cmd: str, cache: Path, results: Path) -> str:
    """What ``cmd`` prints on the pretended machine (stdout), with the cache path shown as a user's."""
    argv = shlex.split(cmd)
    if argv[0] != "harness":
        raise SystemExit(f"example command must be a harness command: {cmd!r}")
    env = dict(os.environ, **PRETEND, HF_HUB_CACHE=str(cache), HARNESS_RESULTS_DIR=str(results))
    res = subprocess.run([str(HARNESS), *argv[1:]], capture_output=True, text=True, env=env, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"`{cmd}` failed (exit {res.returncode}):\n{res.stderr[-2000:]}")
    # Leading and trailing blank lines dropped: a block shows the text, not the spacing around it.
    return res.stdout.replace(str(cache), CACHE_SHOWN).strip("\n") + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 when an example is stale")
    a = ap.parse_args()
    stale = []
    with tempfile.TemporaryDirectory() as tmp:
        cache, results = Path(tmp) / "hub", published_results(Path(tmp) / "results")
        cache.mkdir()
        outputs: dict[str, str] = {}
        for page in pages():
            text = page.read_text()

            def fill(m: re.Match, page: Path = page) -> str:
                cmd = m.group("cmd").strip()
                if cmd not in outputs:
                    outputs[cmd] = run(cmd, cache, results)
                body = outputs[cmd]
                if body != m.group("body"):
                    stale.append(f"{page.relative_to(ROOT)}: {cmd}")
                return m.group(1) + body + m.group(4)

            new = BLOCK.sub(fill, text)
            if new != text and not a.check:
                page.write_text(new)
    for s in stale:
        print(("stale: " if a.check else "updated: ") + s)
    if a.check and stale:
        print("run `.venv/bin/python scripts/readme_examples.py` and commit the result", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
