"""Modules: `import "file.noma" [as m];` and `import std.NAME [as m];` resolved into definitions.

Owns: finding an imported file (relative to the importing file; a cell's: the working directory;
`std.NAME` in the package's noma/std/NAME.noma), parsing each text once per loader (a session
keeps one), refusing what a module may not hold (only `fn`, `dim`, `learn` and `import` stand at
its top level), import cycles and missing files (located diagnostics at the `import`), and replacing each
`import` by the module's definitions. A module imported `as nn` has its definitions renamed
`nn.NAME` (its own references to them too, locals excepted), so `nn.dense(x)` and `nn.W` reach
them. The SymbolTable's `modules` record what was imported: importing a module again whose text
is unchanged adds nothing; a changed one redefines its functions and re-runs the `dim`/`learn`
declarations whose text changed (or are new). Spans of imported code point into the module's
own Source, so diagnostics name that file and show its line. A file is read at every import
and parsed again only when its bytes changed.
Input: a parsed ast.Program. Output: an ast.Program without Import statements.
Imports: noma.compiler.front.ast, noma.compiler.front.parse, noma.compiler.front.symbols,
noma.diagnostics, noma.source_file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from noma.compiler.front import ast
from noma.compiler.front.symbols import SymbolTable
from noma.diagnostics import Kind, Source, error

#: Where the standard library's modules live: `import std.nn;` reads STD_DIR / "nn.noma".
STD_DIR = Path(__file__).resolve().parent.parent.parent / "std"

_DEFINITIONS = (ast.FnDef, ast.DimDecl, ast.Learn, ast.Import)


@dataclass
class _Parsed:
    """One module file as last read: the digest of its bytes and its AST."""

    digest: str
    program: ast.Program


@dataclass
class ModuleLoader:
    """Reads module files and parses each text once (one loader per session): a file is read at
    every import (it is small), and parsed again only when its bytes changed."""

    parsed: dict[str, _Parsed] = field(default_factory=dict)

    def load(self, path: str, display: str) -> _Parsed:
        """The parsed module at absolute `path`; raises OSError when it cannot be read, NomaError
        for its syntax errors (located in the module's own file)."""
        from noma.compiler.front.parse import parse
        from noma.source_file import decode, read_bytes

        data = read_bytes(path)
        digest = hashlib.sha256(data).hexdigest()
        cached = self.parsed.get(path)
        if cached is not None and cached.digest == digest:
            return cached
        entry = _Parsed(digest, parse(decode(display, data)))
        self.parsed[path] = entry
        return entry


def std_modules() -> list[str]:
    """The names of the standard library's modules (`nn` for std/nn.noma), sorted."""
    return sorted(p.stem for p in STD_DIR.glob("*.noma"))


def expand(program: ast.Program, symbols: SymbolTable, base_dir: Optional[str] = None,
           loader: Optional[ModuleLoader] = None) -> ast.Program:
    """`program` with every top-level `import` replaced by the module's definitions (see the
    module docstring); `symbols.modules` is updated. Raises NomaError (located)."""
    if not any(isinstance(item, ast.Import) for item in program.items):
        _check_names(program.items, symbols)
        return program
    expander = _Expander(symbols, loader or ModuleLoader())
    items: list[Any] = []
    aliases = _aliases(program.items)
    _check_names(program.items, symbols, aliases)
    main = program.span.source.name  # a file that imports itself is a cycle too
    chain = (os.path.abspath(main),) if os.path.isfile(main) else ()
    for item in program.items:
        if isinstance(item, ast.Import):
            items += expander.module(item, base_dir or os.getcwd(), "", chain)[0]
        else:
            items.append(item)
    return dataclasses.replace(program, items=tuple(items))


def _aliases(items: tuple) -> dict[str, ast.Import]:
    return {i.alias: i for i in items if isinstance(i, ast.Import) and i.alias is not None}


def _defined(item: Any) -> Optional[str]:
    return item.name if isinstance(item, (ast.FnDef, ast.DimDecl, ast.Learn)) else None


def _check_names(items: tuple, symbols: SymbolTable, aliases: Optional[dict[str, ast.Import]] = None) -> None:
    """A name is either a module alias or a definition, never both (in one file, or a session)."""
    known = {key.split("|", 1)[0].split(".")[0] for key in symbols.modules if key.split("|", 1)[0]}
    for alias, imp in (aliases or {}).items():
        if alias in symbols.functions or alias in symbols.params or alias in symbols.dims or any(
                _defined(i) == alias for i in items):
            raise error(Kind.NAME, f"`{alias}` already names a function, parameter or dim here; "
                        "a module needs another name", imp.alias_span)
    for item in items:
        name = _defined(item)
        if name is not None and (name in known or (aliases and name in aliases)):
            raise error(Kind.NAME, f"`{name}` names an imported module here; choose another name",
                        item.name_span)


class _Expander:
    """One expansion: the modules imported so far (for cycles) and the session's records."""

    def __init__(self, symbols: SymbolTable, loader: ModuleLoader):
        self.symbols = symbols
        self.loader = loader
        #: names each (prefix, path) makes visible to a plain importer (its definitions)
        self.exports: dict[tuple[str, str], set[str]] = {}

    def module(self, imp: ast.Import, base_dir: str, prefix: str,
               chain: tuple[str, ...]) -> tuple[list[Any], set[str]]:
        """The definitions `imp` brings in (renamed under `prefix` + its alias) and the plain names
        it makes visible to the importer."""
        path, display = _resolve(imp, base_dir)
        if path in chain:
            cycle = " → ".join(_short(p) for p in chain[chain.index(path):] + (path,))
            raise error(Kind.NAME, f"import cycle: {cycle}", imp.path_span,
                        "a module cannot import itself, directly or through other modules")
        try:
            parsed = self.loader.load(path, display)
        except OSError as exc:
            raise error(Kind.IO, f"cannot import {imp.path}: {exc.strerror or exc} ({path})",
                        imp.path_span) from None
        inner = prefix + (f"{imp.alias}." if imp.alias else "")
        key = (inner, path)
        if key in self.exports:  # imported earlier in this program or cell: nothing more
            return [], set() if imp.alias else self.exports[key]
        self.exports[key] = set()
        items, visible = self._body(parsed, path, inner, chain + (path,))
        exported = {_defined(i) for i in parsed.program.items if _defined(i)} | visible
        self.exports[key] = {n for n in exported if n is not None}
        return items, set() if imp.alias else self.exports[key]

    def _body(self, parsed: _Parsed, path: str, prefix: str,
              chain: tuple[str, ...]) -> tuple[list[Any], set[str]]:
        """The module's items, its own imports first, renamed under prefix; only what is new or
        changed since the session last imported it."""
        program = parsed.program
        aliases = _aliases(program.items)
        _check_names(program.items, SymbolTable(), aliases)
        out: list[Any] = []
        visible: set[str] = set()
        base = os.path.dirname(path)
        for item in program.items:
            if not isinstance(item, _DEFINITIONS):
                raise error(Kind.SYNTAX, "an imported file holds definitions only (`fn`, `dim`, "
                            "`learn`, `import`); this statement would run on import",
                            item.span, "move it into the importing program, or into a function")
            if isinstance(item, ast.Import):
                items, names = self.module(item, base, prefix, chain)
                out += items
                visible |= names
        own = {_defined(i) for i in program.items if _defined(i)}
        names = {n for n in own | visible if n is not None}
        rename = _Renamer(prefix, names, set(aliases)) if prefix else None
        record_key = f"{prefix}|{path}"
        before = self.symbols.modules.get(record_key)
        decls = frozenset(i.span.text() for i in program.items if isinstance(i, (ast.DimDecl, ast.Learn)))
        self.symbols.modules[record_key] = (parsed.digest, decls)
        if before is not None and before[0] == parsed.digest:
            return out, visible
        for item in program.items:
            if isinstance(item, ast.Import):
                continue
            if isinstance(item, (ast.DimDecl, ast.Learn)) and before is not None and item.span.text() in before[1]:
                continue  # unchanged declaration: the parameter or dim keeps its value
            out.append(rename.stmt(item) if rename else item)
        return out, visible


def _resolve(imp: ast.Import, base_dir: str) -> tuple[str, str]:
    """(absolute path, name shown in diagnostics) of an import; NomaError for an unknown std module."""
    if imp.dotted:
        parts = imp.path.split(".")
        if parts[0] != "std" or len(parts) != 2:
            raise error(Kind.NAME, f"`{imp.path}` is not a module of the standard library: write a "
                        f"file path as a string (`import \"{parts[-1]}.noma\";`) or one of "
                        f"{', '.join('std.' + m for m in std_modules())}", imp.path_span)
        std = STD_DIR / f"{parts[1]}.noma"
        if not std.is_file():
            raise error(Kind.NAME, f"the standard library has no module `{parts[1]}`: it has "
                        f"{', '.join('std.' + m for m in std_modules())}", imp.path_span)
        return str(std), f"std/{parts[1]}.noma"
    path = os.path.abspath(os.path.join(base_dir, imp.path))
    return path, _short(path)


def _short(path: str) -> str:
    """A path as shown: relative to the working directory when under it."""
    if path.startswith(str(STD_DIR) + os.sep):
        return "std/" + os.path.basename(path)
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


class _Renamer:
    """Renames a module's names under its alias prefix (`dense` → `nn.dense`), in its own code:
    its definitions, the names its plain imports made visible and its own aliases' names. A
    function's parameters and locals shadow them, as they do at run time."""

    def __init__(self, prefix: str, names: set[str], aliases: set[str]):
        self.prefix, self.names, self.aliases = prefix, names, aliases
        self.scopes: list[set[str]] = []

    def name(self, name: str) -> str:
        if any(name in scope for scope in self.scopes):
            return name
        if name in self.names or name.split(".")[0] in self.aliases:
            return self.prefix + name
        return name

    def stmt(self, s: Any) -> Any:
        method: Callable[[Any], Any] = getattr(self, "_" + type(s).__name__, self._generic)
        return method(s)

    def _generic(self, node: Any) -> Any:
        changes = {}
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            new = self._value(value)
            if new is not value:
                changes[f.name] = new
        return dataclasses.replace(node, **changes) if changes else node

    def _value(self, value: Any) -> Any:
        if isinstance(value, tuple):
            items = tuple(self._value(v) for v in value)
            return items if any(a is not b for a, b in zip(items, value)) else value
        if dataclasses.is_dataclass(value) and not isinstance(value, type) and hasattr(value, "span"):
            return self.stmt(value)
        return value

    def _scoped(self, names: set[str], node: Any) -> Any:
        self.scopes.append(set(names))
        try:
            return self._generic(node)
        finally:
            self.scopes.pop()

    # expressions
    def _Name(self, e: ast.Name) -> ast.Name:
        new = self.name(e.id)
        return e if new == e.id else dataclasses.replace(e, id=new)

    def _Call(self, e: ast.Call) -> ast.Call:
        e = self._generic(e)
        return dataclasses.replace(e, func=self.name(e.func))

    def _Field(self, e: ast.Field) -> Any:
        dotted = ast.dotted_name(e)
        if dotted is not None and dotted.split(".")[0] in self.aliases and not any(
                dotted.split(".")[0] in scope for scope in self.scopes):
            return ast.Name(self.prefix + dotted, e.span)
        return self._generic(e)

    # statements and definitions
    def _FnDef(self, s: ast.FnDef) -> ast.FnDef:
        body = self._scoped(set(s.params), s.body)
        return dataclasses.replace(s, name=self.prefix + s.name, body=body)

    def _Block(self, s: ast.Block) -> ast.Block:
        self.scopes.append(set())
        try:
            return dataclasses.replace(s, stmts=tuple(self.stmt(x) for x in s.stmts))
        finally:
            self.scopes.pop()

    def _declares(self, s: Any, local: bool) -> Any:
        s = self._generic(s)
        if local and self.scopes:
            self.scopes[-1].add(s.name)
            return s
        return dataclasses.replace(s, name=self.name(s.name))

    def _Let(self, s: ast.Let) -> ast.Let:
        return self._declares(s, True)

    def _LoadCsv(self, s: ast.LoadCsv) -> ast.LoadCsv:
        return self._declares(s, True)

    def _LoadSafetensors(self, s: ast.LoadSafetensors) -> ast.LoadSafetensors:
        return self._declares(s, True)

    def _Learn(self, s: ast.Learn) -> ast.Learn:
        return self._declares(s, False)

    def _DimDecl(self, s: ast.DimDecl) -> ast.DimDecl:
        return self._declares(s, False)

    def _Alloc(self, s: ast.Alloc) -> ast.Alloc:
        return self._declares(s, False)

    def _Assign(self, s: ast.Assign) -> ast.Assign:
        return self._declares(s, False)

    def _Realloc(self, s: ast.Realloc) -> ast.Realloc:
        return self._declares(s, False)

    def _Free(self, s: ast.Free) -> ast.Free:
        return self._declares(s, False)

    def _ReallocKeep(self, s: ast.ReallocKeep) -> ast.ReallocKeep:
        return self._declares(s, False)

    def _For(self, s: ast.For) -> ast.For:
        start, stop = self._value(s.start), self._value(s.stop)
        body = self._scoped({s.var}, s.body)
        return dataclasses.replace(s, start=start, stop=stop, body=body)

    def _Batch(self, s: ast.Batch) -> ast.Batch:
        data, size = self._value(s.data), self._value(s.size)
        body = self._scoped({s.var} | ({s.index_var} if s.index_var else set()), s.body)
        return dataclasses.replace(s, data=data, size=size, body=body)

    def _SaveSafetensors(self, s: ast.SaveSafetensors) -> ast.SaveSafetensors:
        entries = tuple((k, self._value(v)) for k, v in s.entries)
        return dataclasses.replace(s, entries=entries)


def source_dir(source: Source) -> Optional[str]:
    """The directory of a file's Source (its imports are relative to it); None for a cell."""
    return os.path.dirname(os.path.abspath(source.name)) if os.path.isfile(source.name) else None


def requalify(fn: ast.FnDef, qualified: str, known: Iterable[str]) -> ast.FnDef:
    """A function of a module imported with an alias, parsed again from its own text (`fn dense`
    saved as `nn.dense` in a session's definitions), renamed as its import renamed it: its name
    and its references to the module's names among `known` (all qualified names of the session)."""
    prefix = qualified[:len(qualified) - len(fn.name)]
    if not prefix or not qualified.endswith("." + fn.name):
        return fn
    inner = {n[len(prefix):] for n in known if n.startswith(prefix)}
    aliases = {n.split(".")[0] for n in inner if "." in n}
    return _Renamer(prefix, {n for n in inner if "." not in n}, aliases).stmt(fn)


def source_path(source: Source) -> Optional[str]:
    """The file a module's Source was read from (its name is the path as shown), or None."""
    if source.name.startswith("std/"):
        std = STD_DIR / source.name[4:]
        return str(std) if std.is_file() else None
    path = os.path.abspath(source.name)
    return path if os.path.isfile(path) else None
