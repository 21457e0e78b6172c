"""The native runtime's C interface, read from its one declaration: noma/rt/native/noma_rt.h.

Owns: a small parser of the header's function prototypes and enums (the subset of C the header
is written in: one prototype per statement, `enum { NAME = value, ... };`), and the mapping of
each prototype's C types to the one-letter codes of LLVM declarations (`llvm_signatures`).
The ctypes declarations (native_lib) and the lowering's `declare`s (compiler/llvm/module.py) are
generated from what this returns, so adding a runtime function means writing its prototype in
the header and nothing else.
Input: the header's text. Output: Prototype records, enum dicts and signature strings.
Imports: the standard library only (the lowering reads it without loading the runtime).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

HEADER = Path(__file__).resolve().parent / "native" / "noma_rt.h"

#: The C type of a function-pointer parameter (`void (*fn)(void)`), as prototypes report it.
FUNCTION_POINTER = "fnptr"

_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_PREPROCESSOR = re.compile(r"^[ \t]*#[^\n]*$", re.M)
_PROTOTYPE = re.compile(r"^(?P<ret>[A-Za-z_][\w\s*]*?)\s*\b(?P<name>noma_\w+)\s*\((?P<args>.*)\)$", re.S)
_ENUM = re.compile(r"\benum\s*\{(?P<body>[^}]*)\}")
_ENUM_ENTRY = re.compile(r"(?P<name>[A-Z_][A-Z0-9_]*)\s*=\s*(?P<value>-?\d+)")
_STRUCT = re.compile(r"typedef\s+struct\s*\{(?P<body>[^}]*)\}\s*(?P<name>\w+)\s*;")
_FIELD = re.compile(r"^(?P<type>.*?[\s*])(?P<name>[A-Za-z_]\w*)(?:\[(?P<count>\d+)\])?$")
_PARAM_NAME = re.compile(r"^(?P<type>.*?[\s*])(?P<name>[A-Za-z_]\w*)$", re.S)


@dataclass(frozen=True)
class Prototype:
    """`ret name(args);` with each C type normalised (`const char *`, `int64_t`, `fnptr`)."""

    name: str
    ret: str
    args: tuple[str, ...]


def normalise_type(text: str) -> str:
    """`const  char*` -> `const char *`; `NomaTensor **` keeps both stars."""
    text = " ".join(text.split())
    base = text.rstrip("* ").strip()
    stars = text.count("*")
    return base + (" " + "*" * stars if stars else "")


def _param_type(param: str) -> str:
    """The C type of one parameter declaration (its name dropped)."""
    param = " ".join(param.split())
    if "(*" in param.replace(" ", ""):
        return FUNCTION_POINTER
    found = _PARAM_NAME.match(param)
    if found is None or not found.group("type").strip():
        return normalise_type(param)  # an unnamed parameter: the whole text is its type
    return normalise_type(found.group("type"))


def _split_params(text: str) -> list[str]:
    """Top-level comma split (function-pointer parameters hold parentheses)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return [p.strip() for p in out if p.strip()]


def _source(text: str) -> str:
    """The header without comments and preprocessor lines."""
    return _PREPROCESSOR.sub("", _COMMENTS.sub(" ", text))


def parse_prototypes(text: str) -> dict[str, Prototype]:
    """Every `noma_*` function prototype of header text `text`, by name, in header order."""
    out: dict[str, Prototype] = {}
    for statement in _source(text).split(";"):
        statement = statement.rsplit("}", 1)[-1].rsplit("{", 1)[-1].strip()
        found = _PROTOTYPE.match(statement)
        if found is None:
            continue
        params = _split_params(found.group("args"))
        args = () if params == ["void"] else tuple(_param_type(p) for p in params)
        name = found.group("name")
        out[name] = Prototype(name, normalise_type(found.group("ret")), args)
    return out


def parse_enums(text: str) -> dict[str, int]:
    """Every enumerator of the header's anonymous enums: `NOMA_OPT_ADAM` -> 2."""
    out: dict[str, int] = {}
    for enum in _ENUM.finditer(_source(text)):
        for entry in _ENUM_ENTRY.finditer(enum.group("body")):
            out[entry.group("name")] = int(entry.group("value"))
    return out


def parse_structs(text: str) -> dict[str, tuple[tuple[str, str, int], ...]]:
    """Every `typedef struct { fields } Name;` of header text: Name -> ((C type, field, count)),
    count 0 for a plain field and n for an array `field[n]`."""
    out: dict[str, tuple[tuple[str, str, int], ...]] = {}
    for found in _STRUCT.finditer(_source(text)):
        fields = []
        for decl in found.group("body").split(";"):
            decl = " ".join(decl.split())
            if not decl:
                continue
            field = _FIELD.match(decl)
            if field is None:
                raise ValueError(f"cannot read struct field {decl!r} of {found.group('name')}")
            fields.append((normalise_type(field.group("type")), field.group("name"),
                           int(field.group("count") or 0)))
        out[found.group("name")] = tuple(fields)
    return out


@lru_cache(maxsize=1)
def structs() -> dict[str, tuple[tuple[str, str, int], ...]]:
    """The runtime's struct layouts as noma_rt.h declares them."""
    return parse_structs(HEADER.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def prototypes() -> dict[str, Prototype]:
    """The runtime's functions as noma_rt.h declares them."""
    return parse_prototypes(HEADER.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def enums() -> dict[str, int]:
    """The runtime's enum constants as noma_rt.h declares them."""
    return parse_enums(HEADER.read_text(encoding="utf-8"))


def enum_group(prefix: str, *, skip: tuple[str, ...] = ()) -> dict[str, int]:
    """The constants named `prefix` + NAME as {name in lower case: value}, e.g. prefix `NOMA_OPT_`
    gives {"none": 0, "sgd": 1, ...}; `skip` leaves names out (upper case, without the prefix)."""
    return {name[len(prefix):].lower(): value for name, value in enums().items()
            if name.startswith(prefix) and name[len(prefix):] not in skip}


# ---------------------------------------------------------------------------- LLVM declarations

#: C scalar type -> LLVM code (r = real, l = i64, i = i32, v = void); every pointer is `p`.
_LLVM_CODES = {"void": "v", "real": "r", "int64_t": "l", "int32_t": "i"}


def llvm_code(ctype: str) -> str:
    """The one-letter LLVM code of a C type: r, l, i, v, or p for any pointer."""
    if ctype == FUNCTION_POINTER or ctype.endswith("*"):
        return "p"
    try:
        return _LLVM_CODES[ctype]
    except KeyError:
        raise ValueError(f"noma_rt.h uses C type {ctype!r}, which has no LLVM code") from None


def llvm_signature(proto: Prototype) -> str:
    """`ret:args` in LLVM codes, e.g. noma_fail(int32_t, int64_t, const char *) -> `v:ilp`."""
    return llvm_code(proto.ret) + ":" + "".join(llvm_code(a) for a in proto.args)


@lru_cache(maxsize=1)
def llvm_signatures() -> dict[str, str]:
    """Every runtime function generated code may call: name -> `ret:args` (see llvm_signature)."""
    return {name: llvm_signature(p) for name, p in prototypes().items()}
