"""The documentation: a short README, links that resolve, and code blocks that run as shown.

A fenced Python block is *runnable* when its info string has the word ``runnable``
(```` ```python runnable ````) or its first line is ``# runnable``. Each runnable block runs in a
fresh Python process whose working directory is an empty temporary folder. A block whose info
string has ``file=NAME`` (```` ```python runnable file=my_envs.py ````) is also written to ``NAME``
in that folder before every runnable block of the same page runs, so a page's examples can import
the module another of its blocks defines. Blocks that use commands or modules not available yet
are left unmarked (plain ```` ```python ```` or ```` ```bash ````).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
MAX_README_LINES = 200
BLOCK_TIMEOUT_S = 300

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
# Inline links and images, [text](target "title"), and reference definitions, [label]: target.
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^)]*[\"'])?\s*\)"
)
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+\1")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


@dataclass
class Block:
    """One fenced code block of a page."""

    path: Path
    line: int  # 1-based line of the opening fence
    info: list[str]
    code: str

    @property
    def language(self) -> str:
        return self.info[0].lower() if self.info else ""

    @property
    def runnable(self) -> bool:
        if self.language != "python":
            return False
        first = next((line.strip() for line in self.code.splitlines() if line.strip()), "")
        return "runnable" in self.info[1:] or first == "# runnable"

    @property
    def file(self) -> str | None:
        for word in self.info[1:]:
            if word.startswith("file="):
                return word.removeprefix("file=")
        return None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def split_page(path: Path) -> tuple[list[Block], str]:
    """The fenced blocks of a page, and its text outside them."""
    blocks: list[Block] = []
    prose: list[str] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            prose.append(lines[i])
            i += 1
            continue
        indent, fence = len(match["indent"]), match["fence"]
        start, body = i + 1, []
        i += 1
        while i < len(lines):
            closing = FENCE.match(lines[i])
            if (
                closing
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"].strip()
            ):
                break
            body.append(lines[i])
            i += 1
        else:
            raise AssertionError(f"{path.relative_to(ROOT)}:{start}: unclosed code fence")
        i += 1  # the closing fence
        code = textwrap.dedent(
            "\n".join(line[indent:] if line[:indent].isspace() else line for line in body)
        )
        blocks.append(Block(path, start, match["info"].split(), code + "\n"))
    return blocks, "\n".join(prose)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = INLINE_CODE.sub(lambda m: m.group(0).strip("`"), heading.strip()).lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in ("L", "N", "M"))
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown page (duplicates numbered as GitHub does)."""
    _, prose = split_page(path)
    seen: dict[str, int] = {}
    result = set()
    for line in prose.splitlines():
        match = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match[1])
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(path: Path) -> list[str]:
    """The link targets of a page, outside code blocks and inline code."""
    _, prose = split_page(path)
    prose = re.sub(r"<!--.*?-->", "", prose, flags=re.S)
    prose = "\n".join(INLINE_CODE.sub("", line) for line in prose.splitlines())
    return INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in split_page(page)[0]]


RUNNABLE = [block for block in all_blocks() if block.runnable]


def run_python(code: str, folder: Path, files: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``code`` as a script in a fresh process with ``folder`` as its working directory."""
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    script = folder / "doc_block.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ)
    path = [str(ROOT), str(ROOT / "envs"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(
        [sys.executable, script.name],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
    )


def page_files(path: Path) -> dict[str, str]:
    """The blocks of a page that name a file (``file=NAME``), by file name."""
    return {b.file: b.code for b in split_page(path)[0] if b.file is not None}


# -- the README is a front door ----------------------------------------------------------------


def test_readme_is_at_most_200_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_readme_and_the_docs_index_link_every_docs_page():
    pages = {p.resolve() for p in DOCS.rglob("*.md")}
    for index in (README, DOCS / "README.md"):
        linked = {
            (index.parent / target.split("#")[0]).resolve()
            for target in links(index)
            if not EXTERNAL.match(target) and not target.startswith("#")
        }
        missing = sorted(str(p.relative_to(ROOT)) for p in pages - linked - {index.resolve()})
        assert not missing, f"{index.relative_to(ROOT)} does not link {missing}"


# -- links -------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_an_existing_file(page):
    broken = []
    for target in links(page):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page.resolve()
        if not destination.exists():
            broken.append(f"{target} (no file {destination})")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target} (no heading #{anchor} in {destination.name})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


def test_the_link_checker_sees_links_and_anchors():
    targets = links(README)
    assert "docs/interface.md" in targets and "docs/results/rl.md" in targets
    assert "the-bundled-environments" in anchors(DOCS / "environments.md")
    assert slug("Results: GPU") == "results-gpu" and slug("RL^2 with `RecurrentPPO`") == (
        "rl2-with-recurrentppo"
    )


# -- code blocks -------------------------------------------------------------------------------


def test_the_examples_users_copy_are_marked_runnable():
    marked = {block.id.split(":")[0] for block in RUNNABLE}
    assert {"README.md", "docs/interface.md", "docs/environments.md"} <= marked
    assert "my_envs.py" in page_files(DOCS / "environments.md")


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.id)
def test_runnable_code_block_runs(block, tmp_path):
    files = {name: code for name, code in page_files(block.path).items()}
    result = run_python(block.code, tmp_path, files)
    assert result.returncode == 0, (
        f"{block.id} failed (exit {result.returncode}):\n{block.code}\n"
        f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-6000:]}"
    )


PLUGIN_CHECK = """
import warnings

import gymnasium as gym
import torch
from gymnasium.utils.env_checker import check_env

import my_envs
from metagym.tasks import GymTaskDistribution, make_generator

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    check_env(my_envs.TargetEnv(), skip_render_check=True)
dist = GymTaskDistribution("my_envs:TargetEnv", eval_episodes=2)
assert dist.splits == ("train", "val", "test", "ood-far"), dist.splits
far = dist.sample(3, "ood-far", make_generator(0))
assert all(3 <= t.params["target"] <= 5 for t in far), far
episodes = dist.sampler.sample(lambda o: torch.ones(o.shape[0], 1), far, 2, seed=0)
assert episodes.lengths.tolist() == [[20, 20]] * 3, episodes.lengths  # the class's step limit
# The registered, module-prefixed id works too, with the OOD sampler of the docs.
registered = GymTaskDistribution(
    "my_envs:MyTarget-v0",
    ood={"ood-behind": lambda n, rng: [{"target": float(t)} for t in rng.uniform(-5, -3, n)]},
)
behind = registered.sample(2, "ood-behind", make_generator(0))
assert all(-5 <= t.params["target"] <= -3 for t in behind), behind
print("ok")
"""


def test_the_plugin_environment_example_runs_through_metagym(tmp_path):
    """The complete ``my_envs.py`` of docs/environments.md, with the registration the page says to
    append, passes Gymnasium's checker and runs through ``metagym.tasks.GymTaskDistribution``."""
    blocks, _ = split_page(DOCS / "environments.md")
    module = next(b.code for b in blocks if b.file == "my_envs.py")
    registration = next(b.code for b in blocks if "gym.register(" in b.code)
    result = run_python(PLUGIN_CHECK, tmp_path, {"my_envs.py": module + "\n" + registration})
    assert result.returncode == 0 and "ok" in result.stdout, (
        f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-6000:]}"
    )
