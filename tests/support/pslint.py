"""Static checks for the PowerShell this project emits, runnable with no Windows.

Three layers:

``parse_powershell(text)``
    Parse with tree-sitter + tree-sitter-powershell; returns the ``tree_sitter.Tree``.
``assert_parses(text)``
    Fail (``AssertionError``) if the tree has any ERROR or MISSING node, naming line and column.
``check_cmdlets(text, tables, *, allow=())``
    Walk the tree, find every command invocation whose name is a bare command
    name (``Verb-Noun``), and check it against cmdlet tables built by
    ``load_tables()``:

    * a ``Verb-Noun`` command must be in ``tables``, or be a ``function`` defined
      in the same script, or be named in ``allow`` (case-insensitive);
    * each ``-Parameter`` given to a cmdlet from the tables must be one of its
      parameters, one of their aliases (from the ``*-detail.json`` files), or a
      common parameter (or its alias). An abbreviation is accepted only when
      PowerShell would accept it: it is a prefix of exactly one of those names;
    * ``-Name:value`` is handled; native commands (``cmd``, ``wsb.exe``,
      ``& $exe``) are not checked.

    Raises ``AssertionError`` listing every problem; returns the sorted set of
    cmdlet names it verified, so a test can assert the walker really saw them.
    ``find_cmdlet_problems`` is the non-raising variant (returns the problems).

The tables come from Microsoft's documentation (copied from the shared reference
into ``tests/data/cmdlets/``; see its README). Table sets for ``load_tables``:
``"core-5.1"`` (Windows PowerShell 5.1, what guests and powershell.exe run),
``"core-7.4"``, ``"hyperv"`` (Windows Server 2022 docs), ``"hyperv-ws2025"``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import tree_sitter
import tree_sitter_powershell

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "cmdlets"

#: table set name -> (names file, detail file or None)
TABLE_FILES: dict[str, tuple[str, str | None]] = {
    "core-5.1": ("core-cmdlets-5.1.json", "core-cmdlets-5.1-detail.json"),
    "core-7.4": ("core-cmdlets.json", "core-cmdlets-detail.json"),
    "hyperv": ("hyperv-cmdlets.json", "hyperv-cmdlets-detail.json"),
    "hyperv-ws2025": ("hyperv-cmdlets-ws2025.json", "hyperv-cmdlets-detail.json"),
}

#: Common parameters and their documented aliases (about_CommonParameters).
COMMON_PARAMETERS: dict[str, tuple[str, ...]] = {
    "Verbose": ("vb",),
    "Debug": ("db",),
    "ErrorAction": ("ea",),
    "WarningAction": ("wa",),
    "InformationAction": ("infa",),
    "ErrorVariable": ("ev",),
    "WarningVariable": ("wv",),
    "InformationVariable": ("iv",),
    "OutVariable": ("ov",),
    "OutBuffer": ("ob",),
    "PipelineVariable": ("pv",),
    "WhatIf": ("wi",),
    "Confirm": ("cf",),
    "ProgressAction": ("proga",),
}

_VERB_NOUN = re.compile(r"^[A-Za-z]+-[A-Za-z][A-Za-z0-9]*$")


@dataclass(frozen=True)
class CmdletInfo:
    name: str
    parameters: frozenset[str]
    aliases: Mapping[str, str] = field(default_factory=dict)  # alias (lower) -> parameter name

    def resolve(self, written: str) -> tuple[str | None, str]:
        """Resolve ``-written`` as PowerShell's binder would: (parameter or None, reason)."""
        low = written.lower()
        names: dict[str, str] = {p.lower(): p for p in self.parameters}
        for common, common_aliases in COMMON_PARAMETERS.items():
            names.setdefault(common.lower(), common)
            for alias in common_aliases:
                names.setdefault(alias.lower(), common)
        for alias, target in self.aliases.items():
            names.setdefault(alias.lower(), target)
        if low in names:
            return names[low], "exact"
        matches = sorted({target for key, target in names.items() if key.startswith(low)})
        if len(matches) == 1:
            return matches[0], "prefix"
        if not matches:
            return None, f"no parameter -{written}"
        return None, f"-{written} is ambiguous: {', '.join(matches)}"


@cache
def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


def parse_powershell(text: str) -> tree_sitter.Tree:
    return _parser().parse(text.encode("utf-8"))


def _walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def syntax_problems(text: str) -> list[str]:
    tree = parse_powershell(text)
    problems: list[str] = []
    for node in _walk(tree.root_node):
        if node.is_error or node.is_missing:
            line, col = node.start_point
            kind = "missing " + node.type if node.is_missing else "syntax error"
            snippet = (node.text or b"")[:60].decode("utf-8", "replace")
            problems.append(f"{kind} at line {line + 1}, column {col + 1}: {snippet!r}")
    return problems


def assert_parses(text: str) -> tree_sitter.Tree:
    problems = syntax_problems(text)
    assert not problems, "PowerShell does not parse:\n  " + "\n  ".join(problems)
    return parse_powershell(text)


def _load_json(name: str) -> object:
    return json.loads((DATA_DIR / name).read_text(encoding="utf-8"))


@cache
def _load_set(name: str) -> dict[str, CmdletInfo]:
    names_file, detail_file = TABLE_FILES[name]
    names = _load_json(names_file)
    assert isinstance(names, dict)
    detail = _load_json(detail_file) if detail_file else {}
    assert isinstance(detail, dict)
    table: dict[str, CmdletInfo] = {}
    for cmdlet, params in names.items():
        aliases: dict[str, str] = {}
        for pname, entries in (detail.get(cmdlet) or {}).get("parameters", {}).items():
            for entry in entries:
                for alias in (entry.get("aliases") or "").split(","):
                    if alias.strip() and alias.strip().lower() != "none":
                        aliases[alias.strip().lower()] = pname
        table[cmdlet.lower()] = CmdletInfo(cmdlet, frozenset(params), aliases)
    return table


def load_tables(*sets: str) -> dict[str, CmdletInfo]:
    """Cmdlet tables keyed by lower-case cmdlet name. No argument: ``core-5.1`` and ``hyperv``.

    When several sets name the same cmdlet, the first set wins (so pass the
    stricter set first).
    """
    chosen = sets or ("core-5.1", "hyperv")
    merged: dict[str, CmdletInfo] = {}
    for name in chosen:
        if name not in TABLE_FILES:
            raise KeyError(f"unknown cmdlet table set {name!r}; known: {sorted(TABLE_FILES)}")
        for key, info in _load_set(name).items():
            merged.setdefault(key, info)
    return merged


def _defined_functions(root: tree_sitter.Node) -> set[str]:
    found: set[str] = set()
    for node in _walk(root):
        if node.type == "function_statement":
            for child in node.children:
                if child.type == "function_name" and child.text:
                    found.add(child.text.decode().strip().lower())
    return found


@dataclass(frozen=True)
class CommandUse:
    name: str
    parameters: tuple[str, ...]
    line: int


def command_uses(text: str) -> list[CommandUse]:
    """Every command invoked by a bare name, with the ``-Parameter`` tokens given to it."""
    tree = parse_powershell(text)
    uses: list[CommandUse] = []
    for node in _walk(tree.root_node):
        if node.type != "command":
            continue
        name_node = node.child_by_field_name("command_name")
        if name_node is None or name_node.type != "command_name" or not name_node.text:
            continue
        params: list[str] = []
        elements = node.child_by_field_name("command_elements")
        if elements is not None:
            for child in elements.children:
                if child.type == "command_parameter" and child.text:
                    token = child.text.decode().strip()
                    params.append(token.lstrip("-").split(":", 1)[0])
        uses.append(CommandUse(name_node.text.decode().strip(), tuple(params), node.start_point[0] + 1))
    return uses


def find_cmdlet_problems(
    text: str, tables: Mapping[str, CmdletInfo], *, allow: Iterable[str] = ()
) -> tuple[list[str], set[str]]:
    """(problems, verified cmdlet names). See the module docstring for the rules."""
    allowed = {a.lower() for a in allow}
    functions = _defined_functions(parse_powershell(text).root_node)
    problems: list[str] = []
    verified: set[str] = set()
    for use in command_uses(text):
        low = use.name.lower()
        info = tables.get(low)
        if info is None:
            if low in functions or low in allowed or not _VERB_NOUN.match(use.name):
                continue
            problems.append(f"line {use.line}: unknown cmdlet {use.name}")
            continue
        verified.add(info.name)
        for written in use.parameters:
            if not written:
                continue
            resolved, reason = info.resolve(written)
            if resolved is None:
                problems.append(f"line {use.line}: {info.name}: {reason}")
    return problems, verified


def check_cmdlets(text: str, tables: Mapping[str, CmdletInfo], *, allow: Iterable[str] = ()) -> set[str]:
    problems, verified = find_cmdlet_problems(text, tables, allow=allow)
    assert not problems, "PowerShell calls unknown cmdlets or parameters:\n  " + "\n  ".join(problems)
    return verified
