"""Token totals by folder for ``--dry-run`` (repomix's ``--token-count-tree``): where a budget
goes in a repository, with small files and folders folded into one line per folder."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Node:
    name: str  # a folder's ends in "/"
    tokens: int = 0
    children: dict[str, Node] = field(default_factory=dict)

    @property
    def is_folder(self) -> bool:
        return self.name.endswith("/")


def build_tree(counts: Iterable[tuple[str, int]]) -> Node:
    """The tree of ``(path, tokens)`` pairs (paths with ``/``), folder totals summed, and chains
    of folders that hold one folder and nothing else merged into one line (``tmp/run/repo/``)."""
    root = Node("")
    for path, tokens in counts:
        parts = path.split("/")
        if parts[0] == "":  # an absolute path: its first folder is "/"
            parts = ["", *parts[1:]]
        root.tokens += tokens
        node = root
        for index, part in enumerate(parts):
            name = part if index == len(parts) - 1 else part + "/"
            node = node.children.setdefault(name, Node(name))
            node.tokens += tokens
    for child in list(root.children.values()):
        _merge_chains(child)
    return root


def _merge_chains(node: Node) -> None:
    while node.is_folder and len(node.children) == 1:
        (only,) = node.children.values()
        if not only.is_folder:
            break
        node.name += only.name
        node.children = only.children
    for child in node.children.values():
        _merge_chains(child)


def tree_lines(root: Node, fold_below: int = 0) -> list[str]:
    """``  tokens  name`` lines, indented by depth, largest first; items under ``fold_below``
    tokens become one ``(N more, T tokens)`` line in their folder."""
    lines: list[str] = []
    _lines(root, 0, fold_below, lines)
    return lines


def _lines(node: Node, depth: int, fold_below: int, lines: list[str]) -> None:
    children = sorted(node.children.values(), key=lambda n: (-n.tokens, n.name))
    shown = [c for c in children if c.tokens >= fold_below]
    folded = [c for c in children if c.tokens < fold_below]
    for child in shown:
        lines.append(f"  {child.tokens:>9,}  {'  ' * depth}{child.name}")
        _lines(child, depth + 1, fold_below, lines)
    if folded:
        items = sum(_files(c) for c in folded)
        tokens = sum(c.tokens for c in folded)
        what = f"{items} more file" + ("" if items == 1 else "s")
        lines.append(f"  {tokens:>9,}  {'  ' * depth}({what} under {fold_below:,} tokens each)")


def _files(node: Node) -> int:
    return 1 if not node.is_folder else sum(_files(c) for c in node.children.values())


def tree_json(node: Node) -> dict:
    """The whole tree (nothing folded), for ``--json``."""
    out: dict = {"name": node.name, "tokens": node.tokens}
    if node.children:
        children = sorted(node.children.values(), key=lambda n: (-n.tokens, n.name))
        out["children"] = [tree_json(c) for c in children]
    return out
