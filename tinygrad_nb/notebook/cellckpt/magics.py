"""The cell checkpoint magics: ``%tg_ckpt``, ``%tg_log``, ``%tg_checkout``, ``%tg_undo``, ``%tg_diff``, ``%tg_replay``.

Bad arguments raise IPython's ``UsageError`` (one line, no traceback), like the other tinygrad_nb magics. So does a
commit the store refuses (not signed with this user's key: ``%tg_ckpt trust`` accepts it) or cannot read (damaged):
the ``UsageError`` says why, and its ``__cause__`` is the :class:`~.trust.CheckpointStoreError`.
"""
from __future__ import annotations

from typing import Any

from ..magics import usage_error
from .session import CheckpointRefError, Recorder, _size
from .trust import CheckpointStoreError

USAGE = "%tg_ckpt on|off|status|trust|every=N|budget=SIZE|dir=PATH"
MAGICS: list[tuple[str, str, str]] = [
    ("tg_ckpt", "line", f"cell checkpoints: {USAGE}"),
    ("tg_log", "line", "the recorded cells (commits), oldest first; * marks HEAD; --widget: browse them"),
    ("tg_checkout", "line", "restore the namespace to after a cell: %tg_checkout N | #S | HEAD~K"),
    ("tg_undo", "line", "restore the namespace to before the last recorded cell (%tg_checkout HEAD~1)"),
    ("tg_diff", "line", "which variables changed between two commits: %tg_diff A B"),
    ("tg_replay", "line", "re-run recorded cells and verify them bitwise: %tg_replay A[..B] [--verify]"),
]


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(widths[k]) for k in keys).rstrip(),
             "  ".join("-" * widths[k] for k in keys).rstrip()]
    lines += ["  ".join(str(r.get(k, "")).ljust(widths[k]) for k in keys).rstrip() for r in rows]
    return "\n".join(lines)


def _parse_size(text: str) -> int:
    units = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
             "g": 1024**3, "gb": 1024**3, "gib": 1024**3}
    number = text.rstrip("abgikmBGIKM")
    unit = text[len(number):].lower()
    try:
        value = float(number)
    except ValueError:
        raise usage_error(f"%tg_ckpt: budget: expected a size like 500MB or 2GiB, got {text!r}") from None
    if unit not in units or value <= 0:
        raise usage_error(f"%tg_ckpt: budget: expected a size like 500MB or 2GiB, got {text!r}")
    return int(value * units[unit])


class CheckpointMagics:
    def __init__(self, recorder: Recorder):
        self.rec = recorder

    def functions(self) -> list[tuple[str, str, Any]]:
        return [(name, kind, getattr(self, name)) for name, kind, _ in MAGICS]

    def _ref(self, magic: str, ref: str) -> Any:
        try:
            return self.rec.resolve(ref)
        except CheckpointRefError as e:
            raise usage_error(f"%{magic}: {e}") from None

    def tg_ckpt(self, line: str = "") -> None:
        rec = self.rec
        for word in line.split():
            if word == "trust":
                self._trust()
            elif word == "on":
                rec.enabled = True
            elif word == "off":
                rec.enabled = False
            elif word == "status":
                pass
            elif word.startswith("every="):
                try:
                    rec.every = int(word[6:])
                    if rec.every < 1:
                        raise ValueError
                except ValueError:
                    raise usage_error(f"%tg_ckpt: every=N needs a positive integer, got {word[6:]!r}") from None
            elif word.startswith("budget="):
                rec.budget = _parse_size(word[7:])
                if rec._store is not None:
                    rec._store.budget = rec.budget
            elif word.startswith("dir="):
                rec.set_root(word[4:])
            else:
                raise usage_error(f"%tg_ckpt: unknown argument {word!r} (usage: {USAGE})")
        rec.wait()
        store = rec.store if rec.enabled or rec._store is not None else None
        state = "on" if rec.enabled else "off"
        every = "" if rec.every == 1 else f", every {rec.every} cells"
        if store is None:
            print(f"cell checkpoints: {state}{every}")
            return
        print(f"cell checkpoints: {state}{every}; {len(store.commits)} commits, {_size(store.total_bytes())} of "
              f"{_size(store.budget)} in {store.root}")
        note = untrusted_note(store)
        if note:
            print(note)

    def _trust(self) -> None:
        """``%tg_ckpt trust``: sign the store's untrusted commits with this user's key (the user's explicit yes)."""
        done, refused = self.rec.trust()
        if done:
            print(f"trusted {_commits(done)} of {self.rec.store.root}: signed with your key; their pickled values "
                  "and cells may now run on %tg_checkout, %tg_undo, %tg_diff and %tg_replay")
        elif not refused:
            print(f"every commit of {self.rec.store.root} is already trusted")
        for seq, why in refused.items():
            print(f"  not trusted: #{seq}: {why}")

    def tg_log(self, line: str = "") -> Any:
        words = line.split()
        if any(w != "--widget" for w in words):
            raise usage_error(f"%tg_log: unknown argument {next(w for w in words if w != '--widget')!r} "
                              "(usage: %tg_log [--widget])")
        if words:
            from ..widgets.base import in_notebook

            if in_notebook():
                from IPython.display import display

                from .widget import HistoryBrowser

                display(HistoryBrowser(self.rec))
                return None
        print(table(self.rec.log()))
        note = untrusted_note(self.rec.store)
        if note:
            print(note)
        return None

    def tg_checkout(self, line: str = "") -> None:
        if not line.strip():
            raise usage_error("%tg_checkout: which commit? (usage: %tg_checkout N | #S | HEAD~K)")
        self._print_checkout("tg_checkout", self._ref("tg_checkout", line))

    def tg_undo(self, line: str = "") -> None:
        self._print_checkout("tg_undo", self._ref("tg_undo", "HEAD~1"))

    def _print_checkout(self, magic: str, commit: Any) -> None:
        try:
            report = self.rec.checkout(commit)
        except CheckpointStoreError as e:
            raise usage_error(f"%{magic}: {e}") from e
        print("\n".join(describe_checkout(commit, report)))

    def tg_diff(self, line: str = "") -> None:
        words = line.split()
        if len(words) != 2:
            raise usage_error("%tg_diff: expected two commits (usage: %tg_diff A B)")
        a, b = (self._ref("tg_diff", w) for w in words)
        try:
            rows = self.rec.diff(a, b)
        except CheckpointStoreError as e:
            raise usage_error(f"%tg_diff: {e}") from e
        print(f"#{a.seq} -> #{b.seq}: " + (f"{len(rows)} variables differ" if rows else "no variable differs"))
        if rows:
            print(table(rows))

    def tg_replay(self, line: str = "") -> list[dict[str, Any]] | None:
        words = line.split()
        verify = "--verify" in words
        words = [w for w in words if w != "--verify"]
        if len(words) != 1 or words[0].startswith("-"):
            raise usage_error("%tg_replay: expected one range (usage: %tg_replay A[..B] [--verify])")
        first, _, last = words[0].partition("..")
        a = self._ref("tg_replay", first)
        b = self._ref("tg_replay", last) if last else a
        try:
            rows = self.rec.replay(a, b, verify=verify)
        except CheckpointRefError as e:
            raise usage_error(f"%tg_replay: {e}") from None
        except CheckpointStoreError as e:
            raise usage_error(f"%tg_replay: {e}") from e
        out = [{"commit": f"#{r['seq']}", "cell": f"In[{r['cell']}]", "result": r["result"],
                "detail": r.get("detail", "")} for r in rows]
        print(table(out))
        if verify:
            good = sum(r["result"] == "bitwise" for r in rows)
            print(f"{good}/{len(rows)} cells bitwise")
            note = replay_environment_note(self.rec, a, b)
            if note:
                print(f"note: {note}")
        return None


def replay_environment_note(rec: Any, first: Any, last: Any) -> str | None:
    """How the environment the replayed commits were recorded in differs from now in ways that can change bits
    (the first differing commit's, naming it), and whether portable mode was on; None when nothing differs."""
    from ...fingerprint import environment_note

    for commit in rec.chain(first, last):
        note = environment_note(commit.manifest.get("environment"))
        if note:
            return f"commit #{commit.seq}: {note}"
    return None


def untrusted_note(store: Any) -> str:
    """A line naming the commits that are not trusted (``""`` when every one is)."""
    untrusted = [c.seq for c in store.untrusted()]
    if not untrusted:
        return ""
    return (f"not trusted (not signed with your key): {_commits(untrusted)}; they cannot be checked out, diffed or "
            "replayed until you run %tg_ckpt trust, which accepts that their code may run")


def _commits(seqs: list[int]) -> str:
    """``commit #3`` / ``3 commits (#1-#3)`` / ``2 commits (#1, #4)``."""
    if len(seqs) == 1:
        return f"commit #{seqs[0]}"
    if seqs == list(range(seqs[0], seqs[-1] + 1)):
        return f"{len(seqs)} commits (#{seqs[0]}-#{seqs[-1]})"
    shown = ", ".join(f"#{s}" for s in seqs[:8]) + (", ..." if len(seqs) > 8 else "")
    return f"{len(seqs)} commits ({shown})"


def describe_checkout(commit: Any, report: dict[str, Any]) -> list[str]:
    """What a checkout did, as lines: restored and rewritten counts, then each variable it could not restore."""
    cell = f"In[{commit.execution_count}]" if commit.execution_count is not None else "cell"
    lines = [f"checked out #{commit.seq} ({cell}): {len(report['restored'])} variables restored, "
             f"{report['changed_tensors']} tensors rewritten" +
             (f", removed {', '.join(report['removed'])}" if report["removed"] else "")]
    for name, info in report["lost"].items():
        since = f"recompute from cell In[{info['cell']}]" if info.get("cell") is not None else "lost"
        lines.append(f"  not restored: {name}: {since} ({info['why']})")
    for name, why in report["failed"].items():
        lines.append(f"  not restored: {name}: {why}")
    return lines
