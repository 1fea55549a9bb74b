"""The environment inventory: the variables the code reads, against the documented ones.

Read by parsing every Python file (tests left out) with `ast`: `os.environ[...]`,
`os.environ.get`, `os.getenv`, `os.environ.setdefault`, `"X" in os.environ`, django-environ and
environs readers (`env("X")`, `env.str("X")`, `env.bool("X", default=...)`), python-decouple's
`config("X")`, pydantic-settings `BaseSettings` fields (with `env_prefix` and aliases), and the
SDK's own `LAUNCHREADY_*` settings when the code imports the SDK. Documented means named in
`.env.example` (or `.env.sample`, `.env.template`, `example.env`, or `--env-example`), commented
out or not.

Findings: a variable read with no default and not documented is "soon" (it works locally, then
the deploy does not know to set it); one read with a default is "later"; a documented one that
nothing reads is "later", and a documented `LAUNCHREADY_*` name that is no setting (a typo) is
"soon". A secret-looking variable read with a literal default is a secret in the tree: a
blocker when the default looks like a real secret, "soon" otherwise (production runs on the
default when the variable is unset).

Limits, candidly: names computed at run time (`os.getenv(f"{PREFIX}_URL")`) cannot be resolved
and are counted instead; reads in other languages, in shell scripts, Dockerfiles or compose
files are not seen; pydantic's nested delimiters and `case_sensitive` are not modelled.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from launchready_sdk.cli.audit import _git
from launchready_sdk.cli.audit._model import Options, PartResult
from launchready_sdk.cli.audit._secrets import SKIP_DIRS
from launchready_sdk.redaction.secrets import credential_name, preview, secret_like

_EXAMPLE_NAMES: Final = (
    ".env.example",
    ".env.sample",
    ".env.template",
    ".env.dist",
    "example.env",
    "env.example",
    ".env.defaults",
)
_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_UPPER_RE: Final = re.compile(r"^[A-Z][A-Z0-9_]*$")
_DOC_LINE_RE: Final = re.compile(r"^\s*#?\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
_ENV_READERS: Final = frozenset(
    (
        "str",
        "bool",
        "int",
        "float",
        "decimal",
        "list",
        "dict",
        "json",
        "url",
        "db",
        "db_url",
        "cache",
        "cache_url",
        "email",
        "email_url",
        "search_url",
        "path",
        "date",
        "datetime",
        "timedelta",
        "uuid",
        "log_level",
        "enum",
    )
)
_MAX_FILE: Final = 1_000_000
_MAX_LISTED: Final = 12


@dataclass
class Read:
    name: str
    path: str
    line: int
    default: str | None  # the literal default, "" for a non-literal one, None when none
    has_default: bool


@dataclass
class Inventory:
    reads: dict[str, list[Read]] = field(default_factory=dict)
    dynamic: list[str] = field(default_factory=list)
    uses_sdk: bool = False
    unparsable: int = 0

    def add(self, read: Read) -> None:
        self.reads.setdefault(read.name, []).append(read)


def _dotted(node: ast.expr) -> str:
    """`os.environ.get` for an attribute chain; "" for anything else."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _is_environ(node: ast.expr) -> bool:
    return _dotted(node) in ("os.environ", "environ")


def _literal(node: ast.expr | None) -> tuple[bool, str | None]:
    """(there is a default, its text when it is a literal string)."""
    if node is None:
        return False, None
    if isinstance(node, ast.Constant):
        if node.value is None:
            return True, None
        return True, node.value if isinstance(node.value, str) else str(node.value)
    return True, ""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


class _Visitor(ast.NodeVisitor):
    def __init__(self, path: str, inventory: Inventory) -> None:
        self.path, self.inv = path, inventory

    def _name(self, node: ast.expr, strict: bool) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            ok = _UPPER_RE.match(node.value) if strict else _NAME_RE.match(node.value)
            return node.value if ok else None
        if not strict:
            self.inv.dynamic.append(f"{self.path}:{getattr(node, 'lineno', 0)}")
        return None

    def _add(self, node: ast.AST, name: str | None, default: ast.expr | None) -> None:
        if name is None:
            return
        has, text = _literal(default)
        self.inv.add(Read(name, self.path, getattr(node, "lineno", 0), text, has))

    def visit_Call(self, node: ast.Call) -> None:
        func = _dotted(node.func)
        args = node.args
        last = func.rsplit(".", 1)[-1]
        environ_method = (
            last in ("get", "setdefault")
            and isinstance(node.func, ast.Attribute)
            and _is_environ(node.func.value)
        )
        reader = func in ("env", "config") or (func.startswith("env.") and last in _ENV_READERS)
        if args and (func in ("os.getenv", "getenv") or environ_method):
            default = args[1] if len(args) > 1 else _keyword(node, "default")
            self._add(node, self._name(args[0], strict=False), default)
        elif args and reader:
            default = _keyword(node, "default")
            if default is None and len(args) > 1 and func != "env":
                default = args[1]
            self._add(node, self._name(args[0], strict=True), default)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if _is_environ(node.value) and isinstance(node.ctx, ast.Load):
            self._add(node, self._name(node.slice, strict=False), None)
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        if (
            len(node.ops) == 1
            and isinstance(node.ops[0], ast.In)
            and _is_environ(node.comparators[0])
        ):
            self._add(node, self._name(node.left, strict=True), ast.Constant(None))
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        if any(a.name.split(".")[0] == "launchready_sdk" for a in node.names):
            self.inv.uses_sdk = True

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if (node.module or "").split(".")[0] == "launchready_sdk":
            self.inv.uses_sdk = True

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if any(_dotted(b).rsplit(".", 1)[-1] == "BaseSettings" for b in node.bases):
            self._settings_class(node)
        self.generic_visit(node)

    def _settings_class(self, node: ast.ClassDef) -> None:
        prefix = _env_prefix(node)
        for item in node.body:
            if not isinstance(item, ast.AnnAssign) or not isinstance(item.target, ast.Name):
                continue
            name, default = item.target.id, item.value
            if name == "model_config":
                continue
            if isinstance(default, ast.Call) and _dotted(default.func).endswith("Field"):
                alias = _keyword(default, "validation_alias") or _keyword(default, "alias")
                if isinstance(alias, ast.Constant) and isinstance(alias.value, str):
                    name = alias.value
                    prefix_here = ""
                else:
                    prefix_here = prefix
                field_default = _keyword(default, "default")
                if field_default is None and default.args:
                    field_default = default.args[0]
                if isinstance(field_default, ast.Constant) and field_default.value is Ellipsis:
                    field_default = None
                default = field_default
            else:
                prefix_here = prefix
            self._add(item, (prefix_here + name).upper(), default)


def _env_prefix(node: ast.ClassDef) -> str:
    for item in node.body:
        call: ast.expr | None = None
        if isinstance(item, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "model_config" for t in item.targets
        ):
            call = item.value
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            if item.target.id == "model_config":
                call = item.value
        elif isinstance(item, ast.ClassDef) and item.name == "Config":
            for sub in item.body:
                if (
                    isinstance(sub, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "env_prefix" for t in sub.targets)
                    and isinstance(sub.value, ast.Constant)
                ):
                    return str(sub.value.value)
        if isinstance(call, ast.Call):
            value = _keyword(call, "env_prefix")
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                return value.value
        if isinstance(call, ast.Dict):
            for k, v in zip(call.keys, call.values, strict=True):
                if (
                    isinstance(k, ast.Constant)
                    and k.value == "env_prefix"
                    and isinstance(v, ast.Constant)
                    and isinstance(v.value, str)
                ):
                    return v.value
    return ""


def _is_test(path: str) -> bool:
    parts = path.split("/")
    name = parts[-1]
    return (
        any(p in ("tests", "test", "testing") for p in parts[:-1])
        or name.startswith("test_")
        or name.endswith("_test.py")
        or name == "conftest.py"
    )


def _python_files(root: Path, in_git: bool) -> Iterator[str]:
    if in_git:
        for raw in [*_git.tracked(root), *_git.untracked(root)]:
            path = _git.display_path(raw)
            if path.endswith(".py"):
                yield path
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            if name.endswith(".py"):
                yield os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")


def inventory(root: Path, in_git: bool, deadline: float, result: PartResult) -> Inventory:
    inv = Inventory()
    tests = 0
    for path in _python_files(root, in_git):
        if time.monotonic() > deadline:
            result.skipped.append("stopped at the time budget; later files were not read")
            break
        if _is_test(path):
            tests += 1
            continue
        full = root / path
        try:
            if full.stat().st_size > _MAX_FILE:
                continue
            tree = ast.parse(full.read_bytes(), filename=path)
        except (OSError, SyntaxError, ValueError):
            inv.unparsable += 1
            continue
        _Visitor(path, inv).visit(tree)
    if tests:
        result.notes.append(f"{tests} test files left out of the inventory")
    return inv


def _documented(path: Path) -> dict[str, int]:
    names: dict[str, int] = {}
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        m = _DOC_LINE_RE.match(line)
        if m and _UPPER_RE.match(m.group(1)):
            names.setdefault(m.group(1), number)
    return names


def _sdk_variables() -> set[str]:
    from launchready_sdk.settings import ENV_PREFIX, Settings

    return {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}


def _where(reads: list[Read]) -> str:
    first = reads[0]
    more = f" and {len(reads) - 1} more" if len(reads) > 1 else ""
    return f"{first.path}:{first.line}{more}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def _secret_defaults(inv: Inventory, result: PartResult) -> None:
    for name, reads in sorted(inv.reads.items()):
        if credential_name(name) is None:
            continue
        for read in reads:
            if not read.default:
                continue
            real = secret_like(read.default)
            if real:
                result.secrets.add(read.default)
            shown = preview(read.default) if real else "a literal default"
            result.add(
                "secret-in-tree",
                "blocker" if real else "soon",
                f"{name} falls back to {shown} written in the code",
                f"{read.path}:{read.line}",
                f'Read {name} without a default (os.environ["{name}"]) so a deploy that forgot '
                "it fails at start-up instead of running on a value everyone can read"
                + ("; rotate the value, it is in the code" if real else "."),
            )
            break


def _compare(inv: Inventory, example: Path, shown: str, result: PartResult) -> None:
    documented = _documented(example)
    sdk = _sdk_variables() if inv.uses_sdk else set()
    required: list[str] = []
    optional: list[str] = []
    for name, reads in sorted(inv.reads.items()):
        if name in documented:
            continue
        if all(r.has_default for r in reads):
            optional.append(name)
        else:
            required.append(name)
    for name in required:
        reads = inv.reads[name]
        result.add(
            "env-undocumented",
            "soon",
            f"{name} is read with no default and not in {shown}",
            _where(reads),
            f"Add `{name}=` to {shown} (the name, never the value) so every deploy sets it; "
            "a missing variable is how an app that works locally fails in production.",
        )
    if optional:
        result.add(
            "env-undocumented",
            "later",
            f"{_count(len(optional), 'variable')} with defaults read but not in {shown}: "
            f"{_listed(optional)}",
            "; ".join(_where(inv.reads[n]) for n in optional[:3]),
            f"List them in {shown}, commented out with their defaults, so operators know they "
            "exist.",
        )
    unread = [n for n in documented if n not in inv.reads and n not in sdk]
    typos = [n for n in unread if n.startswith("LAUNCHREADY_") and inv.uses_sdk]
    for name in typos:
        close = difflib.get_close_matches(name, sorted(sdk), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        result.add(
            "env-undocumented",
            "soon",
            f"{name} in {shown} is not a launchready setting{hint}",
            f"{shown}:{documented[name]}",
            "Fix the name: the SDK reads only LAUNCHREADY_<SETTING> names, so this value is "
            "silently ignored.",
        )
    others = [n for n in unread if n not in typos]
    if others:
        result.add(
            "env-undocumented",
            "later",
            f"{_count(len(others), 'variable')} in {shown} never read by the code: "
            f"{_listed(others)}",
            ", ".join(f"{shown}:{documented[n]}" for n in others[:5]),
            "Remove them from the file, or check the code reads them under that exact name.",
        )


def run(options: Options, deadline: float) -> PartResult:
    """The environment part over `options.repo`."""
    result = PartResult()
    if options.repo is None:
        raise ValueError("--repo is required")
    top = _git.work_tree(options.repo)
    root = top if top is not None else options.repo
    inv = inventory(root, top is not None, deadline, result)
    if inv.dynamic:
        result.notes.append(
            f"{_count(len(inv.dynamic), 'read')} with computed names could not be resolved "
            f"(first at {inv.dynamic[0]})"
        )
    if inv.unparsable:
        result.notes.append(f"{inv.unparsable} Python files could not be parsed")
    _secret_defaults(inv, result)
    example = options.env_example
    if example is None:
        example = next((root / n for n in _EXAMPLE_NAMES if (root / n).is_file()), None)
    if example is None:
        if inv.reads:
            names = sorted(inv.reads)
            result.add(
                "env-undocumented",
                "soon",
                f"no .env.example: the code reads {_count(len(names), 'variable')} "
                f"({_listed(names)})",
                _where(inv.reads[names[0]]),
                "Commit a .env.example naming every variable (no values) so a deploy can be "
                "checked against it; or name the file with --env-example.",
            )
        result.notes.append(f"{_count(len(inv.reads), 'variable')} read by the code")
        return result
    shown = os.path.relpath(example, root) if example.is_relative_to(root) else str(example)
    _compare(inv, example, shown, result)
    result.notes.append(
        f"{_count(len(inv.reads), 'variable')} read by the code, compared with {shown}"
    )
    return result
