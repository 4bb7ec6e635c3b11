"""The documentation (issue #29): the MkDocs site builds with --strict (a broken link or anchor, or a page left
out of the navigation, fails), the README stays a front page whose links resolve, and the example outputs in
the README and docs/ are what the commands print (scripts/readme_examples.py --check)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
README_MAX_LINES = 250  # the limit for the front page


def _mkdocs_build(project: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        capture_output=True,
        text=True,
        env={"PATH": str(BIN), "NO_MKDOCS_2_WARNING": "1"},
    )


def test_mkdocs_strict_build(tmp_path):
    res = _mkdocs_build(ROOT, tmp_path / "site")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()


def test_mkdocs_strict_build_sees_a_broken_link_and_an_orphan_page(tmp_path):
    """The strict build is a real check: a copy with a link to a missing anchor fails, and so does a copy
    with a page the navigation leaves out."""
    for fault in ("link", "orphan"):
        project = tmp_path / fault
        shutil.copytree(ROOT / "docs", project / "docs")
        shutil.copy(ROOT / "mkdocs.yml", project)
        if fault == "link":
            page = project / "docs" / "usage.md"
            page.write_text(page.read_text() + "\nSee [nowhere](speed.md#no-such-section).\n")
        else:
            (project / "docs" / "forgotten.md").write_text("# Forgotten\n")
        res = _mkdocs_build(project, tmp_path / f"site-{fault}")
        assert res.returncode != 0, fault
        assert ("no-such-section" if fault == "link" else "forgotten.md") in res.stderr, res.stderr[-2000:]


def test_readme_is_a_front_page_whose_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert local, "the README links to the docs"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, missing


def test_example_outputs_are_what_the_commands_print():
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "readme_examples.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def _shell_lines() -> list[tuple[str, str]]:
    """(page, command line) for every line of every ```bash block in the README and docs/, continuations
    joined and comments dropped."""
    out = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" # ")[0].strip()
                if line and not line.startswith("#"):
                    out.append((page.name, line))
    return out


def test_commands_in_the_docs_name_real_targets_subcommands_and_options():
    """Every `make TARGET` names a Makefile target, and every `.venv/bin/harness SUB --option` a subcommand and
    an option its --help lists (what can be checked without running benchmarks)."""
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    helps: dict[str, str] = {}
    bad = []
    for page, line in _shell_lines():
        for part in re.split(r"&&|;", line):
            words = [w for w in part.split() if not re.match(r"^[A-Z_]+=", w)]
            if words[:1] == ["make"]:
                bad += [f"{page}: {line}" for w in words[1:2] if w not in targets]
            elif words[:1] == [".venv/bin/harness"] and len(words) > 1:
                sub = words[1]
                if sub not in helps:
                    res = subprocess.run(
                        [str(BIN / "harness"), sub, "--help"], capture_output=True, text=True
                    )
                    helps[sub] = res.stdout if res.returncode == 0 else ""
                options = [w.split("=")[0] for w in words[2:] if w.startswith("--")]
                if not helps[sub] or any(o not in helps[sub] for o in options):
                    bad.append(f"{page}: {line}")
    assert helps and not bad, bad
