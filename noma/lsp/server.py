"""`noma lsp`: the language server over stdio, on pygls.

Owns: the LSP wiring — each open document is checked (noma.lsp.analysis, the compiler's own front
end; nothing runs) when it opens or changes and its diagnostics are published (a burst of edits
is checked once, at its newest version); requests are answered from the latest check:
completion (keywords, builtins with signatures, optimizers, policies, casts, and the names in
scope with their shape and dtype), hover, go to definition, references, document symbols and
rename. A document whose path contains `.ipynb` is a notebook (jupyterlab-lsp).
Imports: pygls, lsprotocol, noma.lsp (analysis, vocabulary, scopes).
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlparse

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from noma.compiler.front.parse import KEYWORDS
from noma.lsp import vocabulary
from noma.lsp.analysis import Analysis, analyze, builtin_detail, describe
from noma.lsp.scopes import Definition

_WORD_BEFORE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
_WORD_AFTER = re.compile(r"^[A-Za-z0-9_]*")
_DOTTED_BEFORE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*$")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SEVERITY = {"error": lsp.DiagnosticSeverity.Error, "warning": lsp.DiagnosticSeverity.Warning,
             "information": lsp.DiagnosticSeverity.Information}
_SYMBOL_KIND = {"function": lsp.SymbolKind.Function, "argument": lsp.SymbolKind.Variable,
                "parameter": lsp.SymbolKind.Field, "buffer": lsp.SymbolKind.Field,
                "dim": lsp.SymbolKind.Constant, "global": lsp.SymbolKind.Variable,
                "data": lsp.SymbolKind.Variable, "model": lsp.SymbolKind.Module}
_COMPLETION_KIND = {"function": lsp.CompletionItemKind.Function, "dim": lsp.CompletionItemKind.Constant,
                    "parameter": lsp.CompletionItemKind.Field, "buffer": lsp.CompletionItemKind.Field,
                    "model": lsp.CompletionItemKind.Module}


class NomaServer(LanguageServer):
    """A pygls server that keeps the latest Analysis of every open document."""

    def __init__(self, dtype: str = "f64"):
        super().__init__("noma-lsp", "0.1.0", text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental)
        self.dtype = dtype
        self.analyses: dict[str, Analysis] = {}
        #: the last analysis of each document that parsed (names to complete while a line is half typed)
        self.parsed: dict[str, Analysis] = {}
        self.checked_text: dict[str, str] = {}

    def check(self, uri: str) -> Analysis:
        doc = self.workspace.get_text_document(uri)
        path = _path(uri)
        result = analyze(path, doc.source, self.dtype, notebook=".ipynb" in path)
        self.analyses[uri] = result
        self.checked_text[uri] = doc.source
        if result.index is not None:
            self.parsed[uri] = result
        self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(
            uri=uri, version=doc.version, diagnostics=[_diagnostic(result, p) for p in result.problems]))
        return result

    def analysis(self, uri: str) -> Analysis:
        found = self.analyses.get(uri)
        doc = self.workspace.get_text_document(uri)
        if found is None or self.checked_text.get(uri) != doc.source:
            found = self.check(uri)
        return found


def _path(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


def _range(a: Analysis, start: int, end: int) -> lsp.Range:
    sl, sc = a.lines.position(start)
    el, ec = a.lines.position(end)
    return lsp.Range(lsp.Position(sl, sc), lsp.Position(el, ec))


def _diagnostic(a: Analysis, problem) -> lsp.Diagnostic:
    d = problem.diagnostic
    span = d.span
    rng = _range(a, span.start, span.end) if span is not None else _range(a, 0, 0)
    message = d.message + (f"\nnote: {d.note}" if d.note else "")
    return lsp.Diagnostic(range=rng, message=message, severity=_SEVERITY[problem.severity],
                          source="noma", code=d.kind.value)


def _word_at(a: Analysis, offset: int) -> tuple[str, int, int]:
    text = a.source.text
    left = _WORD_BEFORE.search(text[:offset])
    right = _WORD_AFTER.match(text[offset:])
    start = left.start() if left else offset
    end = offset + (right.end() if right else 0)
    return text[start:end], start, end


def _imported_definition(a: Analysis, offset: int) -> Optional[lsp.Location]:
    """Where a function of an imported module (`nn.dense`, or `dense` after a plain import) is
    defined: its name in the module's file."""
    from noma.compiler.front.modules import source_path
    from noma.lsp.positions import LineIndex

    text = a.source.text
    left = _DOTTED_BEFORE.search(text[:offset])
    right = _WORD_AFTER.match(text[offset:])
    word = text[left.start() if left else offset:offset + (right.end() if right else 0)]
    fn = a.symbols.functions.get(word)
    if fn is None or fn.name_span.source is a.source:
        return None
    path = source_path(fn.name_span.source)
    if path is None:
        return None
    lines = LineIndex(fn.name_span.source.text)
    (sl, sc), (el, ec) = lines.position(fn.name_span.start), lines.position(fn.name_span.end)
    return lsp.Location(uri=Path(path).as_uri(), range=lsp.Range(lsp.Position(sl, sc), lsp.Position(el, ec)))


def _definition_at(a: Analysis, offset: int) -> Optional[Definition]:
    if a.index is None:
        return None
    ref = a.index.reference_at(offset)
    return ref.definition if ref is not None else None


def build(dtype: str = "f64") -> NomaServer:
    server = NomaServer(dtype)

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: NomaServer, params: lsp.DidOpenTextDocumentParams) -> None:
        ls.check(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    async def did_change(ls: NomaServer, params: lsp.DidChangeTextDocumentParams) -> None:
        await asyncio.sleep(0)  # let edits already received apply first: check only the newest text
        uri = params.text_document.uri
        if ls.workspace.get_text_document(uri).version == params.text_document.version:
            ls.check(uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: NomaServer, params: lsp.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.analyses.pop(uri, None)
        ls.parsed.pop(uri, None)
        ls.checked_text.pop(uri, None)
        ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    @server.feature(lsp.TEXT_DOCUMENT_COMPLETION,
                    lsp.CompletionOptions(trigger_characters=["."]))
    def completion(ls: NomaServer, params: lsp.CompletionParams) -> lsp.CompletionList:
        a = ls.analysis(params.text_document.uri)
        offset = a.lines.offset(params.position.line, params.position.character)
        items = completions(a, ls.parsed.get(params.text_document.uri), offset)
        return lsp.CompletionList(is_incomplete=False, items=items)

    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    def hover(ls: NomaServer, params: lsp.HoverParams) -> Optional[lsp.Hover]:
        a = ls.analysis(params.text_document.uri)
        offset = a.lines.offset(params.position.line, params.position.character)
        text, start, end = hover_text(a, offset)
        if text is None:
            return None
        return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=f"```noma\n{text}\n```"),
                         range=_range(a, start, end))

    @server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
    def definition(ls: NomaServer, params: lsp.DefinitionParams) -> Optional[lsp.Location]:
        a = ls.analysis(params.text_document.uri)
        offset = a.lines.offset(params.position.line, params.position.character)
        d = _definition_at(a, offset)
        if d is None:
            return _imported_definition(a, offset)
        return lsp.Location(uri=params.text_document.uri, range=_range(a, d.span.start, d.span.end))

    @server.feature(lsp.TEXT_DOCUMENT_REFERENCES)
    def references(ls: NomaServer, params: lsp.ReferenceParams) -> list[lsp.Location]:
        a = ls.analysis(params.text_document.uri)
        d = _definition_at(a, a.lines.offset(params.position.line, params.position.character))
        if d is None or a.index is None:
            return []
        return [lsp.Location(uri=params.text_document.uri, range=_range(a, r.start, r.end))
                for r in a.index.references_to(d)
                if params.context.include_declaration or r.start != d.span.start]

    @server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def symbols(ls: NomaServer, params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
        return document_symbols(ls.analysis(params.text_document.uri))

    @server.feature(lsp.TEXT_DOCUMENT_PREPARE_RENAME)
    def prepare_rename(ls: NomaServer, params: lsp.PrepareRenameParams) -> Optional[lsp.Range]:
        a = ls.analysis(params.text_document.uri)
        offset = a.lines.offset(params.position.line, params.position.character)
        if a.index is None or _definition_at(a, offset) is None:
            return None
        ref = a.index.reference_at(offset)
        return None if ref is None else _range(a, ref.start, ref.end)

    @server.feature(lsp.TEXT_DOCUMENT_RENAME)
    def rename(ls: NomaServer, params: lsp.RenameParams) -> Optional[lsp.WorkspaceEdit]:
        a = ls.analysis(params.text_document.uri)
        d = _definition_at(a, a.lines.offset(params.position.line, params.position.character))
        if d is None or a.index is None:
            return None
        new = params.new_name
        if not _IDENT.match(new) or new in KEYWORDS:
            raise JsonRpcInvalidParams(f"`{new}` is not a name NOMA accepts")
        if new in vocabulary.BUILTINS:
            raise JsonRpcInvalidParams(f"`{new}` is a builtin; calls to it would change meaning")
        refs = a.index.references_to(d)
        for r in refs:
            if any(other.name == new and other is not d for other in a.index.visible(r.start)):
                raise JsonRpcInvalidParams(f"`{new}` already means something where `{d.name}` is used")
        edits = [lsp.TextEdit(range=_range(a, r.start, r.end), new_text=new) for r in refs]
        return lsp.WorkspaceEdit(changes={params.text_document.uri: edits})

    return server


# ----------------------------------------------------------------------------- request bodies


def completions(a: Analysis, parsed: Optional[Analysis], offset: int) -> list[lsp.CompletionItem]:
    """Completion items at `offset`: what the preceding word allows, else names and words."""
    before = a.source.text[:offset]
    prefix_match = _WORD_BEFORE.search(before)
    head = before[:prefix_match.start()] if prefix_match else before
    previous = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", head)
    previous_word = previous.group(1) if previous and not head.endswith(".") else ""
    if previous_word == "as":
        return [lsp.CompletionItem(label=t, kind=lsp.CompletionItemKind.TypeParameter, detail="cast")
                for t in vocabulary.CAST_TYPES]
    if previous_word == "with" and re.search(r"\)\s*with\s*$", head):
        return [lsp.CompletionItem(label=o, kind=lsp.CompletionItemKind.Function,
                                   detail=vocabulary.doc(o) or "optimizer") for o in vocabulary.OPTIMIZERS]
    if previous_word == "init":
        return [lsp.CompletionItem(label=p, kind=lsp.CompletionItemKind.EnumMember, detail="resize policy",
                                   documentation=vocabulary.doc(p) or None) for p in vocabulary.POLICIES]
    items: list[lsp.CompletionItem] = []
    seen: set[str] = set()
    source = a if a.index is not None else parsed
    if source is not None and source.index is not None:
        where = min(offset, len(source.source.text))
        for d in source.index.visible(where):
            if d.name in seen:
                continue
            seen.add(d.name)
            kind = _COMPLETION_KIND.get(d.kind, lsp.CompletionItemKind.Variable)
            items.append(lsp.CompletionItem(label=d.name, kind=kind, detail=describe(d, source),
                                            sort_text="0" + d.name))
    for name in vocabulary.BUILTINS:
        if name not in seen:
            seen.add(name)
            items.append(lsp.CompletionItem(label=name, kind=lsp.CompletionItemKind.Function,
                                            detail=vocabulary.signature(name),
                                            documentation=builtin_detail(name), sort_text="1" + name))
    for name in vocabulary.KEYWORDS:
        if name not in seen:
            seen.add(name)
            items.append(lsp.CompletionItem(label=name, kind=lsp.CompletionItemKind.Keyword,
                                            detail="keyword", documentation=vocabulary.doc(name) or None,
                                            sort_text="2" + name))
    return items


def hover_text(a: Analysis, offset: int) -> tuple[Optional[str], int, int]:
    """(text, start, end) for the name at `offset`: a declared name, a builtin or a keyword."""
    if a.index is not None:
        ref = a.index.reference_at(offset)
        if ref is not None:
            return describe(ref.definition, a), ref.start, ref.end
    word, start, end = _word_at(a, offset)
    if not word:
        return None, start, end
    if word in vocabulary.BUILTINS or word in vocabulary.OPTIMIZERS:
        sig = vocabulary.signature(word)
        doc = vocabulary.doc(word)
        text = doc if doc.startswith(sig) else f"{sig}: {doc}" if doc else sig
        if word in vocabulary.BUILTINS:
            text += f"  ({vocabulary.arity_text(word)})"
        return text, start, end
    if word in vocabulary.KEYWORDS:
        return (vocabulary.doc(word) or f"keyword {word}"), start, end
    return None, start, end


def document_symbols(a: Analysis) -> list[lsp.DocumentSymbol]:
    if a.index is None:
        return []
    out = []
    for d in a.index.definitions:
        if d.kind == "function":
            children = [_symbol(a, c, []) for c in d.children]
            out.append(_symbol(a, d, children))
        elif (d.function is None and d.kind in _SYMBOL_KIND and d.kind != "argument"
              and d.visible_to == a.index.program.span.end):
            out.append(_symbol(a, d, []))
    out.sort(key=lambda s: (s.range.start.line, s.range.start.character))
    return out


def _symbol(a: Analysis, d: Definition, children: list[lsp.DocumentSymbol]) -> lsp.DocumentSymbol:
    return lsp.DocumentSymbol(name=d.name, kind=_SYMBOL_KIND.get(d.kind, lsp.SymbolKind.Variable),
                              range=_range(a, d.decl.start, d.decl.end),
                              selection_range=_range(a, d.span.start, d.span.end),
                              detail=describe(d, a), children=children or None)


class _RefusalFilter(logging.Filter):
    """pygls logs every error response with a traceback; a refused rename is an answer, not a fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, JsonRpcInvalidParams)


def main(dtype: str = "f64") -> int:
    logging.getLogger("pygls.protocol.json_rpc").addFilter(_RefusalFilter())
    build(dtype).start_io()
    return 0
