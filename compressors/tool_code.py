"""Source code: signatures kept, the bodies relevant to the request kept whole, every other body one marker line.

Lines are never re-indented or edited: the output is lines of the input plus marker lines, each at the indentation
of what it replaces.

* **Python** (``ast.parse`` succeeds and there is a ``def`` or ``class``): imports, the module docstring, every
  ``def``/``class`` header with its decorators, and the first line of each docstring (with its closing quotes when
  they stand on their own line) are always kept. A function body, a class-level or module-level statement, and the
  rest of a docstring are the units chosen by relevance; an omitted stretch becomes
  ``...  # [promptzip: 23 lines omitted]`` (the first one also ``; expand pz-…``), so the output still parses (it
  is checked: the plan without docstring summaries is tried next, then None). A unit no longer than its marker is
  always kept.
* **Brace languages** (JS/TS, Go, Java, C#, C/C++, Rust, …): declaration lines (``function``, ``class``, ``func``,
  ``fn``, ``interface``, ``struct``, typed signatures, ``const f = (…) =>``) whose block is found by brace depth
  (strings and comments skipped). Headers, closing braces and imports are kept; a leaf block's body, or a run of
  other statements, is a unit; an omitted one becomes ``// [promptzip: …]``. A text whose braces or parentheses do
  not balance, or with fewer than 2 declaration blocks, is not taken (None).
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from promptzip.compressors.tool_outputs import (
    Count,
    LinePlan,
    LineUnit,
    Reduced,
    Relevance,
    fit_prefix,
    greedy,
    indent_of,
    marker,
    omitted,
    rank,
    relevance_scores,
    split_lines,
)

__all__ = ["CodeReducer"]

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_BARE_OPEN = re.compile(r"[rRuU]?(\"\"\"|''')")


# -- Python ----------------------------------------------------------------------------------------------------------
def _python_tree(text: str) -> ast.Module | None:
    if text.lstrip()[:1] in ("{", "["):
        return None  # data, not a module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escapes and the like in the input are not our warnings
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, OverflowError):
            return None
    return tree if any(isinstance(n, _DEFS) for n in ast.walk(tree)) else None


def _parses(text: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, OverflowError):
            return False
    return True


def _first(node: ast.stmt) -> int:
    decorators: list[ast.expr] = getattr(node, "decorator_list", [])
    return min([node.lineno, *(d.lineno for d in decorators)]) - 1


def _last(node: ast.stmt) -> int:
    return (node.end_lineno or node.lineno) - 1


def _docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _doc_keep(doc: Sequence[str]) -> list[int] | None:
    """Lines of a multi-line docstring to keep (relative): the opening line (and the first text line after a bare
    opening), and the closing line; None when its closing quotes share a line with text."""
    if doc[-1].strip() not in ('"""', "'''"):
        return None
    if _BARE_OPEN.fullmatch(doc[0].strip()):
        text = next((k for k in range(1, len(doc) - 1) if doc[k].strip()), None)
        return [0, len(doc) - 1] if text is None else [0, text, len(doc) - 1]
    return [0, len(doc) - 1]


def _python_plan(tree: ast.Module, lines: list[str], *, docstrings: bool) -> LinePlan:
    plan = LinePlan.empty(lines, "...  #")

    def seg(a: int, b: int) -> str:
        return "".join(lines[a : b + 1])

    def must(a: int, b: int) -> None:
        plan.must[a : b + 1] = [True] * (b + 1 - a)

    def own_line(node: ast.stmt) -> bool:  # does the statement start its line (not `def f(): return 1`)?
        line = lines[_first(node)].encode()
        return bool(getattr(node, "decorator_list", None)) or not line[: node.col_offset].strip()

    def doc(node: ast.stmt) -> tuple[int, int] | None:
        """Keep a docstring's summary lines; the lines it leaves to a unit, if any."""
        a, b = _first(node), _last(node)
        keep = _doc_keep(lines[a : b + 1]) if docstrings and b > a else None
        if a == b or (keep is None and b - a < 3):
            must(a, b)
            return None
        if keep is None:
            return a, b
        for k in range(a, b + 1):
            if k - a in keep:
                plan.must[k] = True
            else:
                plan.silent[k] = indent_of(lines[a])
        plan.closes[b] = True
        return a + 1, b - 1

    def body(stmts: Sequence[ast.stmt], owner: str) -> None:
        groups: list[list[ast.stmt]] = []
        for s in stmts:  # statements that share a line (`a = 1; b = 2`) go together
            if groups and _first(s) <= _last(groups[-1][-1]):
                groups[-1].append(s)
            else:
                groups.append([s])
        for g in groups:
            a, b = _first(g[0]), _last(g[-1])
            if len(g) == 1 and isinstance(g[0], _DEFS):
                definition(g[0], owner)
            elif all(isinstance(s, ast.Import | ast.ImportFrom) for s in g):
                must(a, b)
            else:
                imports = any(isinstance(n, ast.Import | ast.ImportFrom) for s in g for n in ast.walk(s))
                plan.unit(a, b, owner + "\n" + seg(a, b), 0 if imports else 1)

    def definition(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, owner: str) -> None:
        a, b = _first(node), _last(node)
        name = f"{owner}.{node.name}" if owner else node.name
        plan.defs.append((a, b))
        head = node.body[0]
        if not own_line(head):
            must(a, b)  # a one-line definition: `def f(): return 1`
            return
        must(a, _first(head) - 1)
        rest = node.body[1:]
        cut = None
        if not _docstring(head) or (rest and _first(rest[0]) <= _last(head)):
            rest = node.body  # no docstring, or `"""doc"""; x = 1`: it goes with the body
        else:
            cut = doc(head)
        if isinstance(node, ast.ClassDef) or not rest:
            if cut is not None:
                plan.unit(cut[0], cut[1], f"{name}\n{seg(*cut)}", 1)
            body(rest if isinstance(node, ast.ClassDef) else [], name)
        else:
            first = _first(rest[0])
            plan.unit(cut[0] if cut is not None else first, b, f"{name}\n{seg(a, b)}", 1)
            plan.start[first] = indent_of(lines[first])

    stmts = tree.body
    if stmts and _docstring(stmts[0]):
        must(_first(stmts[0]), _last(stmts[0]))
        stmts = stmts[1:]
    body(stmts, "")
    return plan


# -- brace languages -------------------------------------------------------------------------------------------------
_KW_DECL = re.compile(
    r"[ \t]*(?:[\w$@]+[ \t]+)*?(?:function\b|func\b|fn\b|class\b|interface\b|struct\b|enum\b|trait\b|impl\b"
    r"|namespace\b|record\b|object\b|extern[ \t]+\"C\"|type[ \t]+\w+[ \t]+(?:struct|interface)\b)"
)
_SIG = re.compile(r"[ \t]*((?:[\w$<>\[\],.*&?:]+[ \t]+)*)[*&]?([A-Za-z_$~][\w$]*)[ \t]*(?:<[^>()]*>)?\(")
_ARROW = re.compile(
    r"[ \t]*(?:export[ \t]+)?(?:const|let|var)[ \t]+[\w$]+[ \t]*(?::[^=]+)?=[ \t]*(?:async[ \t]*)?"
    r"(?:function\b|\(|[\w$]+[ \t]*=>)"
)
_DATA = re.compile(r"[^(]*\b(?:struct|interface|enum|record|type)\b")
_IMPORT = re.compile(
    r"[ \t]*(?:import\b|package\b|#[ \t]*(?:include|import)\b|use\b|using\b|extern[ \t]+crate\b|export\b.*\bfrom\b)"
)
_CONTROL = frozenset(
    "if for while switch catch else do return try with synchronized foreach elif until unless lock using fixed "
    "sizeof typeof new throw case default await yield match loop select go defer delete void in of".split()
)
_COMMENT = ("//", "/*", "*", "#")
_TOKEN = re.compile(r"//|/\*|\*/|\\.|[\"'`{}()\[\];]")
_QUOTED = {q: re.compile(rf"(?:[^{q}\\\r\n]|\\.)*{q}") for q in "\"'"}


@dataclass
class _Scan:
    depth: list[int]  # brace depth at the start of each line
    paren: list[int]  # ( and [ depth at the start of each line
    inside: list[bool]  # the line starts inside a comment or a template string
    events: list[list[tuple[str, int, int]]]  # per line: (char, brace depth before it, paren depth before it)
    close: dict[tuple[int, int], int]  # (line, n-th event of the line) of a "{" -> line of its "}"


def _scan(lines: Sequence[str]) -> _Scan | None:
    """Brace and parenthesis structure, strings and comments skipped; None when they do not balance."""
    scan = _Scan([], [], [], [], {})
    depth = paren = 0
    stack: list[tuple[int, int]] = []
    state = ""  # "", "/*" or "`"
    for li, line in enumerate(lines):
        scan.depth.append(depth)
        scan.paren.append(paren)
        scan.inside.append(bool(state))
        events: list[tuple[str, int, int]] = []
        scan.events.append(events)
        pos = 0
        while m := _TOKEN.search(line, pos):
            tok, pos = m.group(), m.end()
            if state:
                state = "" if tok == ("*/" if state == "/*" else "`") else state
            elif tok == "//":
                break
            elif tok in ("/*", "`"):
                state = tok
            elif tok in _QUOTED:
                q = _QUOTED[tok].match(line, pos)
                pos = q.end() if q else pos  # an unclosed quote is a lifetime or an apostrophe: read on
            elif tok == "{":
                stack.append((li, len(events)))
                events.append(("{", depth, paren))
                depth += 1
            elif tok == "}":
                if not stack:
                    return None
                scan.close[stack.pop()] = li
                depth -= 1
                events.append(("}", depth, paren))
            elif tok in "([":
                paren += 1
            elif tok in ")]":
                paren -= 1
                if paren < 0:
                    return None
            elif tok == ";":
                events.append((";", depth, paren))
    return scan if not stack and not state and paren == 0 else None


def _declares(line: str) -> bool:
    if _KW_DECL.match(line) or _ARROW.match(line):
        return True
    m = _SIG.match(line)
    if not m or m.group(2) in _CONTROL:
        return False
    words = m.group(1).split()
    return not (words and words[0] in _CONTROL)


def _brace_plan(lines: list[str]) -> LinePlan | None:
    sample = [ln for ln in lines[:3000] if ln.strip()]
    if len(sample) < 5 or sum(1 for ln in sample if _declares(ln)) < 2:
        return None
    if sum(1 for ln in sample if ln.rstrip()[-1:] in ("{", "}", ";")) < 0.2 * len(sample):
        return None
    scan = _scan(lines)
    if scan is None:
        return None
    planner = _BracePlanner(lines, scan)
    if not planner.region(0, len(lines) - 1, ""):
        return None
    return planner.plan if len(planner.plan.defs) >= 2 else None


class _BracePlanner:
    """The line plan of a brace-language file: declarations (by their braces, recursively), their bodies as units,
    the statements between them."""

    def __init__(self, lines: list[str], scan: _Scan) -> None:
        self.lines, self.scan, self.n = lines, scan, len(lines)
        self.plan = LinePlan.empty(lines, "//")

    def seg(self, a: int, b: int) -> str:
        return "".join(self.lines[a : b + 1])

    def block(self, j: int) -> tuple[int, int] | None:
        """The (open line, close line) of the declaration at ``j``, when its block opens within 5 lines and its
        braces are clean (the open line opens one level, the close line closes it)."""
        scan, n = self.scan, self.n
        for li in range(j, min(j + 5, n)):
            for k, (ch, d, p) in enumerate(scan.events[li]):
                if d != scan.depth[j] or p != scan.paren[j]:
                    continue
                if ch != "{":
                    return None
                close = scan.close[(li, k)]
                after = scan.depth[close + 1] if close + 1 < n else 0
                if close == li:
                    return (li, li) if after == d else None
                clean = scan.depth[li + 1] == d + 1 == scan.depth[close] and after == d
                return (li, close) if clean else None
        return None

    def region(self, s: int, e: int, owner: str) -> bool:
        """Declarations at the depth of line ``s`` within lines s..e; False (and nothing planned) when none."""
        lines, scan, plan = self.lines, self.scan, self.plan
        decls: list[tuple[int, int, int]] = []
        j = s
        while j <= e:
            level = scan.depth[j] == scan.depth[s] and scan.paren[j] == scan.paren[s] and not scan.inside[j]
            if level and _declares(lines[j]):
                opened = self.block(j)
                if opened is not None and opened[1] <= e:
                    decls.append((j, *opened))
                    j = opened[1] + 1
                    continue
            j += 1
        if not decls:
            return False
        run = s
        for j, o, c in decls:
            head = j
            while head > run and lines[head - 1].lstrip().startswith("@"):
                head -= 1  # annotations and decorators belong to their declaration
            self.statements(run, head - 1, owner, s > 0)
            plan.must[head : o + 1] = [True] * (o + 1 - head)
            plan.must[c] = True
            plan.defs.append((head, c))
            name = f"{owner}.{lines[j].strip()}" if owner else lines[j].strip()
            if c > o + 1 and not self.region(o + 1, c - 1, name):
                body = next((k for k in range(o + 1, c) if lines[k].strip()), o + 1)
                tier = 0 if _DATA.match(lines[j]) else 1
                plan.unit(o + 1, c - 1, f"{name}\n{self.seg(head, c)}", tier, indent_of(lines[body]))
            run = c + 1
        self.statements(run, e, owner, s > 0)
        return True

    def statements(self, s: int, e: int, owner: str, member: bool) -> None:
        """Imports kept, comments go with the next line; every other statement (split where the depth returns to
        the region's) is a unit, members of a type before top-level code."""
        lines, scan, plan = self.lines, self.scan, self.plan
        j = s
        while j <= e:
            k = j
            while k < e and (scan.depth[k + 1] != scan.depth[s] or scan.paren[k + 1] != scan.paren[s]):
                k += 1
            if _IMPORT.match(lines[j]):
                plan.must[j : k + 1] = [True] * (k + 1 - j)
            elif lines[j].strip() and not scan.inside[j] and not lines[j].lstrip().startswith(_COMMENT):
                plan.unit(j, k, f"{owner}\n{self.seg(j, k)}", 0 if member else 1)
            j = k + 1


# -- the reducer -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CodeReducer:
    """Code: signatures and imports kept, relevant bodies whole, other bodies one marker line; never re-indented."""

    kind: str = "code"

    def detect(self, text: str) -> bool:
        return _python_tree(text) is not None or _brace_plan(split_lines(text)) is not None

    def reduce(
        self,
        text: str,
        *,
        query: str | None,
        target_tokens: int,
        count: Count,
        relevance: Relevance | None,
        expand_id: str,
    ) -> Reduced | None:
        lines = split_lines(text)
        tree = _python_tree(text)
        if tree is not None:
            if count(text) <= target_tokens:
                return None
            for docstrings in (True, False):  # the plain plan when a docstring's summary would not parse
                plan = _python_plan(tree, lines, docstrings=docstrings)
                out = _choose(plan, query, target_tokens, count, relevance, expand_id)
                if _parses(out.text):
                    return out
            return None
        brace = _brace_plan(lines)
        if brace is None or count(text) <= target_tokens:
            return None
        out = _choose(brace, query, target_tokens, count, relevance, expand_id)
        return out if _scan(split_lines(out.text)) is not None else None


def _choose(
    plan: LinePlan, query: str | None, target: int, count: Count, relevance: Relevance | None, expand_id: str
) -> Reduced:
    # a unit no longer than the marker that would replace it is kept: cutting it saves nothing
    note = count(f"{plan.comment} {marker(omitted(100), None)}\n")
    units: list[LineUnit] = []
    cost: list[int] = []
    for u in plan.units:
        n = count("".join(plan.lines[k] for k in range(u.first, u.last + 1) if not plan.must[k]))
        if n <= note:
            plan.must[u.first : u.last + 1] = [True] * (u.last + 1 - u.first)
        else:
            units.append(u)
            cost.append(n)
    plan.units = units
    scores = relevance_scores([u.text for u in units], query, relevance)

    def render(ks: Sequence[int]) -> str:
        return plan.render([units[i] for i in ks], expand_id)

    skeleton = count(render(()))
    picked = greedy(rank(scores, [u.tier for u in units]), cost.__getitem__, target - skeleton)
    text, k, tokens = fit_prefix(picked, render, count, target)
    keep = plan.keep([units[i] for i in picked[:k]])
    whole = sum(1 for a, b in plan.defs if all(keep[a : b + 1]))
    return Reduced(text, "code", tokens, len(plan.defs), whole)
