"""Every public function and class is documented: it has a docstring or docs/ mentions it by name."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import tinygrad_nb as tg
from tinygrad_nb import data, debug, nn, optim, track
from tinygrad_nb.nn import functional, init
from tinygrad_nb.optim import lr_scheduler

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_NAMESPACES = {"tinygrad_nb": tg, "nn": nn, "nn.functional": functional, "nn.init": init, "optim": optim,
                     "optim.lr_scheduler": lr_scheduler, "data": data, "debug": debug, "track": track}


def public_callables() -> list[tuple[str, object]]:
    found = []
    for prefix, namespace in PUBLIC_NAMESPACES.items():
        names = getattr(namespace, "__all__", None) or [n for n in vars(namespace) if not n.startswith("_")]
        for name in names:
            obj = getattr(namespace, name, None)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__.startswith("tinygrad_nb"):
                found.append((f"{prefix}.{name}", obj))
    return found


def test_every_public_function_and_class_is_documented() -> None:
    docs = "\n".join(p.read_text() for p in (ROOT / "docs").glob("*.md")) + (ROOT / "README.md").read_text()
    missing = [qualified for qualified, obj in public_callables()
               if not (inspect.getdoc(obj) or re.search(rf"\b{re.escape(qualified.rsplit('.', 1)[1])}\b", docs))]
    assert missing == [], f"undocumented public API: {missing}"


@pytest.mark.parametrize("page", sorted(str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")))
def test_docs_links_point_at_existing_pages(page: str) -> None:
    path = ROOT / "docs" / page
    for target in re.findall(r"\]\(([^)#:]+\.md)", path.read_text()):
        assert (path.parent / target).exists(), f"docs/{page} links to missing {target}"


def test_every_magic_has_its_own_page() -> None:
    from tinygrad_nb.notebook.cellckpt.magics import MAGICS as CHECKPOINT_MAGICS
    from tinygrad_nb.notebook.magics import MAGICS

    names = {name for name, _kind, _help in MAGICS + CHECKPOINT_MAGICS}
    missing = sorted(name for name in names if not (ROOT / "docs" / "magics" / f"{name}.md").exists())
    assert missing == []
