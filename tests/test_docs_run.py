"""Docs that run: every example in README.md and docs/**/*.md is executed, like Rust's doctests.

Each page runs as a newcomer would run it: in a fresh interpreter (a subprocess) whose working directory is a
temporary folder, its examples in order, sharing one namespace. What counts as an example:

* a ```` ```python ```` block. If it holds a magic line (``%load_ext ...``) the page runs in an IPython shell and the
  block is one cell;
* a ``>>>`` session (in a ``pycon`` or untyped block), checked by :mod:`doctest`;
* an IPython session (an untyped block of ``In [N]: ...`` prompts, continuation lines ``   ...:``), run cell by cell
  in an IPython shell whose execution count is set to each prompt's N, so "cell [N]" in the output is the one shown.

An untyped block right after a python block (nothing but blank lines between them) is that block's printed output;
a session's output is the text after each prompt. Output is compared after the substitutions of
tests/nbval_sanitize.cfg (durations, addresses, temporary folders, run ids, ...), the same rules the teaching
notebooks use. In expected output a line ``...`` stands for any number of lines.

Markers are HTML comments, invisible in rendered Markdown, on the lines just before a block:

* ``<!-- fragment -->`` (or ``<!-- fragment: why -->``): an excerpt that cannot run on its own (it uses names the
  page never defines, a GPU, a file the reader has). It is only compiled (magics transformed first).
* ``<!-- output: numbers-vary -->``, ``<!-- output: unordered -->`` (both may be given): before an output block or a
  session, compare with every number replaced by ``N`` and runs of spaces collapsed (measured times and the column
  widths they cause), or as a sorted list of lines (tables sorted by a measured time).
* ``<!-- invisible-code-block: python ... -->`` (Sybil's spelling): code that runs at that place but is not shown,
  to give an example what it needs (a small model, a file).

Each page's working directory starts with copies of the bundled datasets' CSV files, so ``read_csv("iris.csv")``
works as written. Why not Sybil, pytest-markdown-docs or phmdoctest: they run every page in the test process (one
interpreter for all pages, state such as the RNG, observers and the run store leaking between them), and none
compares a python block's printed output with the block after it or runs IPython sessions with magics; the runner
they would need is this file.

Run directly (``python tests/test_docs_run.py BLOCKS.json``) this module is the per-page runner the test starts.
"""
from __future__ import annotations

import configparser
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))
PAGE_TIMEOUT_S = 300

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)[^`]*$")
COMMENT = re.compile(r"<!--(.*?)-->", re.S)
MAGIC_LINE = re.compile(r"^\s*%{1,2}[A-Za-z_]")
PROMPT = re.compile(r"^In \[(\d+)\]: ?(.*)$")
CONTINUATION = re.compile(r"^\s*\.\.\.: ?(.*)$")
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass
class Cell:
    """One thing to run: its source and, when the docs show one, the output it must print."""

    source: str
    line: int                       # 1-based line of the source in the page
    expected: str | None = None
    count: int | None = None        # the In [N] of a session cell


@dataclass
class Block:
    page: str
    line: int                       # 1-based line of the opening fence
    kind: str                       # "python", "ipython", "session", "doctest"
    cells: list[Cell] = field(default_factory=list)
    fragment: str | None = None     # why it is only compiled
    compare: list[str] = field(default_factory=list)   # "numbers-vary", "unordered"
    hidden: bool = False

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


# -- reading the Markdown -----------------------------------------------------------------------------------------------
def fenced_blocks(text: str) -> list[tuple[int, int, str, str, str]]:
    """``(start line, line where the text before it begins, info string, content, that text before it since the
    previous block)``, 1-based lines."""
    lines = text.splitlines()
    found, i, previous_end = [], 0, 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = len(m["indent"].expandtabs()), m["fence"]
        end = i + 1
        while end < len(lines):
            close = FENCE.match(lines[end])
            if close and close["fence"].startswith(fence[0]) and len(close["fence"]) >= len(fence) and not close["info"]:
                break
            end += 1
        body = "\n".join(line[indent:] if line[:indent].strip() == "" else line.lstrip() for line in lines[i + 1:end])
        found.append((i + 1, previous_end + 1, m["info"].lower(), body, "\n".join(lines[previous_end:i])))
        previous_end = end + 1
        i = end + 1
    return found


def directives(before: str) -> tuple[list[str], list[tuple[int, str]]]:
    """The marker comments directly above a block (only blank lines or other comments in between), and the hidden
    code blocks anywhere in the text before it, with their offsets."""
    hidden = [(m.start(), textwrap.dedent(m.group(1).split("\n", 1)[1]))
              for m in COMMENT.finditer(before) if m.group(1).strip().startswith("invisible-code-block: python")]
    tail = before.rstrip()
    markers = []
    while tail.endswith("-->"):
        start = tail.rfind("<!--")
        markers.insert(0, tail[start + 4:-3].strip())
        tail = tail[:start].rstrip()
    return [m for m in markers if not m.startswith("invisible-code-block")], hidden


def parse_session(body: str, first_line: int) -> list[Cell]:
    cells: list[Cell] = []
    output: list[str] = []
    for offset, line in enumerate(body.splitlines()):
        prompt = PROMPT.match(line)
        if prompt:
            if cells:
                cells[-1].expected = "\n".join(output)
            cells.append(Cell(prompt[2], first_line + offset, count=int(prompt[1])))
            output = []
        elif cells and not output and CONTINUATION.match(line):
            cells[-1].source += "\n" + CONTINUATION.match(line)[1]
        elif cells:
            output.append(line)
    if cells:
        cells[-1].expected = "\n".join(output)
    return cells


def parse_page(page: str) -> list[Block]:
    blocks: list[Block] = []
    previous: Block | None = None
    for start, before_line, info, body, before in fenced_blocks((ROOT / page).read_text()):
        markers, hidden = directives(before)
        for offset, code in hidden:
            line = before_line + before[:offset].count("\n")  # the comment's first line
            kind = "ipython" if any(MAGIC_LINE.match(l) for l in code.splitlines()) else "python"
            blocks.append(Block(page, line, kind, [Cell(code, line + 1)], hidden=True))
        fragment = next((m.partition(":")[2].strip() or "an excerpt" for m in markers if m.startswith("fragment")),
                        None)
        compare = [word for m in markers if m.startswith("output:") for word in re.split(r"[,\s]+", m[7:]) if word]
        stripped = body.strip()
        kind = None
        if info in ("python", "py", "ipython"):
            kind = "doctest" if stripped.startswith(">>>") else (
                "ipython" if info == "ipython" or any(MAGIC_LINE.match(l) for l in body.splitlines()) else "python")
        elif info in ("pycon", "") and stripped.startswith(">>>"):
            kind = "doctest"
        elif info in ("", "text", "ipython") and PROMPT.match(stripped.splitlines()[0] if stripped else ""):
            kind = "session"
        elif info in ("", "text") and previous is not None and previous.kind in ("python", "ipython") \
                and COMMENT.sub("", before).strip() == "":
            previous.cells[-1].expected = body
            previous.compare += compare
            previous = None
            continue
        if kind is None:
            previous = None
            continue
        if kind == "session":
            cells = parse_session(body, start + 1)
        else:
            cells = [Cell(body, start + 1)]
        block = Block(page, start, kind, cells, fragment, compare)
        blocks.append(block)
        previous = block
    return blocks


# -- comparing output ---------------------------------------------------------------------------------------------------
def sanitize_rules() -> list[tuple[re.Pattern[str], str]]:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "tests" / "nbval_sanitize.cfg")
    # Not "notebook cell numbers": the runner sets each session cell's execution count, so "cell [N]" must match.
    return [(re.compile(config[s]["regex"]), config[s]["replace"]) for s in config.sections()
            if s != "notebook cell numbers"]


def normalize(text: str, compare: list[str], rules: list[tuple[re.Pattern[str], str]]) -> list[str]:
    for pattern, replacement in rules:
        text = pattern.sub(replacement, text)
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    if "numbers-vary" in compare:
        lines = [re.sub(r" {2,}", " ", NUMBER.sub("N", line)) if line.strip() != "..." else line for line in lines]
        lines = [re.sub(r"-[- ]*-", "---", line) for line in lines]  # table rules whose widths follow the numbers
    if "unordered" in compare:
        lines = sorted(lines)
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; an expected line ``...`` matches any number of lines."""
    pattern = "".join(r"(?:[^\n]*\n)*?" if line.strip() == "..." else re.escape(line) + r"\n" for line in expected)
    return re.fullmatch(pattern, "".join(line + "\n" for line in actual)) is not None


# -- running a page (in the subprocess) ---------------------------------------------------------------------------------
def _ipython_shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    config.InteractiveShell.colors = "NoColor"
    shell = InteractiveShell.instance(config=config)
    shell.InteractiveTB.set_mode("Context")
    return shell


def run_blocks(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run one page's blocks in order; for every cell, what it printed and the error it raised (None if none)."""
    import doctest

    needs_ipython = any(b["kind"] in ("ipython", "session") for b in blocks)
    shell = _ipython_shell() if needs_ipython else None
    namespace: dict[str, Any] = shell.user_ns if shell is not None else {"__name__": "__main__"}
    results = []
    for block in blocks:
        for cell in block["cells"]:
            out = io.StringIO()
            error = None
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                try:
                    if block["fragment"] is not None:
                        source = shell.transform_cell(cell["source"]) if shell is not None else cell["source"]
                        compile(source, f"{block['page']}:{cell['line']}", "exec")
                    elif block["kind"] == "doctest":
                        test = doctest.DocTestParser().get_doctest(cell["source"], namespace, block["page"],
                                                                   block["page"], cell["line"] - 1)
                        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
                        runner.run(test, out=out.write, clear_globs=False)
                        namespace.update(test.globs)  # DocTest works on a copy; later blocks see its names
                        if runner.failures:
                            error = f"{runner.failures} doctest example(s) failed"
                    elif shell is not None:
                        if cell["count"] is not None:
                            shell.execution_count = cell["count"]
                        result = shell.run_cell(cell["source"], store_history=True)
                        failure = result.error_before_exec or result.error_in_exec
                        if failure is not None:
                            error = f"{type(failure).__name__}: {failure}"
                    else:
                        code = compile(cell["source"], f"{block['page']}:{cell['line']}", "exec")
                        exec(code, namespace)  # noqa: S102 - the docs' own example
                except BaseException as e:  # noqa: BLE001 - reported to the test, which names the block
                    import traceback

                    error = f"{type(e).__name__}: {e}\n" + "".join(traceback.format_exc(limit=-3))
            results.append({"output": out.getvalue(), "error": error})
    return results


# -- the tests ----------------------------------------------------------------------------------------------------------
def _page_ids() -> list[str]:
    return [page for page in PAGES if parse_page(page)]


@pytest.mark.parametrize("page", _page_ids())
def test_page_examples_run_and_print_what_the_docs_show(page: str, tmp_path: Path) -> None:
    blocks = parse_page(page)
    from tinygrad_nb import datasets

    work = tmp_path / "work"
    work.mkdir()
    for csv in Path(datasets.__file__).parent.glob("*.csv"):
        shutil.copy(csv, work / csv.name)
    blocks_file = tmp_path / "blocks.json"
    blocks_file.write_text(json.dumps([asdict(b) for b in blocks]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYGRAD_NB_RUNS_DB")}
    env.update(IPYTHONDIR=str(tmp_path / "ipython"), MPLBACKEND="Agg", TINYGRAD_NB_DEVICE="cpu")
    proc = subprocess.run([sys.executable, __file__, str(blocks_file)], cwd=work, env=env, capture_output=True,
                          text=True, timeout=PAGE_TIMEOUT_S, check=False)
    assert proc.returncode == 0, f"{page}: the runner failed:\n{proc.stderr[-3000:]}"
    results = iter(json.loads(proc.stdout.strip().splitlines()[-1]))
    rules = sanitize_rules()
    problems = []
    for block in blocks:
        for cell in block.cells:
            result = next(results)
            where = f"{page}:{cell.line}"
            if result["error"] and not (block.kind == "session" and cell.expected and
                                        result["error"].split(":")[0] in cell.expected):
                problems.append(f"{where} ({block.kind}{', fragment' if block.fragment else ''}) raised "
                                f"{result['error']}\n{result['output']}")
            elif cell.expected is not None and block.fragment is None:
                expected = normalize(cell.expected, block.compare, rules)
                actual = normalize(result["output"], block.compare, rules)
                if not matches(expected, actual):
                    problems.append(f"{where}: printed\n" + "\n".join(actual) + "\nbut the docs show\n"
                                    + "\n".join(expected))
    assert not problems, "\n\n".join(problems)


def test_the_parser_finds_examples_outputs_sessions_and_markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "page.md"
    page.write_text(textwrap.dedent("""\
        # A page

        <!-- invisible-code-block: python
        hidden = 1
        -->

        ```python
        print(hidden + 1)
        ```

        ```
        2
        ```

        <!-- fragment: uses a GPU -->
        ```python
        x = tg.randn(3, device="cuda")
        ```

        * In a list:

          ```python
          %load_ext tinygrad_nb
          ```

        <!-- output: numbers-vary -->
        ```
        In [3]: %tg_seed 4
        seeded with 4

        In [4]: for i in range(2):
           ...:     pass
        ```

        ```bash
        tinygrad-nb demo
        ```
        """))
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    blocks = parse_page("page.md")
    assert [(b.kind, b.line, b.hidden, b.fragment, b.compare) for b in blocks] == [
        ("python", 3, True, None, []), ("python", 7, False, None, []), ("python", 16, False, "uses a GPU", []),
        ("ipython", 22, False, None, []), ("session", 27, False, None, ["numbers-vary"])]
    assert blocks[1].cells == [Cell("print(hidden + 1)", 8, "2")]
    assert blocks[3].cells[0].source == "%load_ext tinygrad_nb"
    assert blocks[4].cells == [Cell("%tg_seed 4", 28, "seeded with 4\n", 3),
                               Cell("for i in range(2):\n    pass", 31, "", 4)]


def test_output_comparison_sanitizes_and_understands_ellipsis() -> None:
    rules = sanitize_rules()
    expected = normalize("trained 3 epochs in 0.4s\nrun 1a2b3c4d\n...\nend", [], rules)
    assert matches(expected, normalize("trained 3 epochs in 12.0s\nrun 99ffee00\na\nb\nend\n", [], rules))
    assert not matches(expected, normalize("trained 4 epochs in 1s\nrun 99ffee00\nend", [], rules))
    table = "op  calls  ms\n--  -----  --\nMul    10  1.5\nAdd     5  0.25"
    wider = "op  calls  ms\n--  -----  ----\nAdd     5  10.25\nMul    10  1.5"
    assert not matches(normalize(table, ["numbers-vary"], rules), normalize(wider, ["numbers-vary"], rules))
    assert matches(normalize(table, ["numbers-vary", "unordered"], rules),
                   normalize(wider, ["numbers-vary", "unordered"], rules))



def test_runner_shares_one_namespace_and_reports_doctest_failures() -> None:
    def block(kind: str, source: str, fragment: str | None = None) -> dict[str, Any]:
        return asdict(Block("p.md", 1, kind, [Cell(source, 2)], fragment))

    results = run_blocks([block("doctest", ">>> x = 2\n>>> x + 1\n3\n"), block("python", "print(x * 5)"),
                          block("doctest", ">>> x\n4\n"), block("python", "print(undefined", "an excerpt")])
    assert [r["error"] for r in results[:3]] == [None, None, "1 doctest example(s) failed"]
    assert results[1]["output"] == "10\n" and "Expected:\n    4\nGot:\n    2" in results[2]["output"]
    assert results[3]["error"].startswith("SyntaxError: '(' was never closed")  # fragments are still compiled


if __name__ == "__main__":
    blocks_file = Path(sys.argv[1])
    print(json.dumps(run_blocks(json.loads(blocks_file.read_text()))), file=sys.__stdout__)
    sys.__stdout__.flush()
    os._exit(0)  # leave at once: nothing the page started (threads, atexit handlers) may add to the report
