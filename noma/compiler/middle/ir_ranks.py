"""The result rank ir.verify() expects of an instruction: ops.result_rank, remembered.

Owns: expected_rank(op, ranks, attrs). verify asks for every instruction of a module; asking
result_rank each time (and building its attribute dict) was a third of verify's time. The answer is
remembered per (op, operand ranks, values of the attributes result_rank read): result_rank is a
function of its arguments, so an instruction whose op, operand ranks and those attribute values
are the same gets the same answer (result_rank reads the same first attribute, sees the same
value, so reads the same next one, and so on). Which attributes it reads is learnt by handing it
the attributes in a dict that notes every read.
Imports: noma.compiler.middle.ops only.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

from noma.compiler.middle.ops import Op, result_rank

Attrs = tuple[tuple[str, Any], ...]
_ABSENT = object()  # the value noted for an attribute the instruction does not have


class _Noting(dict[str, Any]):
    """An instruction's attributes as result_rank gets them, noting each attribute it reads
    (`reads`: name, and type and value or _ABSENT, in order) and whether it read them all (`whole`:
    iteration, len, keys, values, items). Every way of reading a dict's contents is overridden."""

    def __init__(self, attrs: Attrs):
        super().__init__(attrs)
        self.reads: list[tuple[str, Any]] = []
        self.whole = False

    def _note(self, key: Any) -> None:
        value = dict.get(self, key, _ABSENT)
        self.reads.append((key, (value.__class__, value)))

    def __getitem__(self, key: str) -> Any:
        self._note(key)
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return dict.get(self, key, default)

    def __contains__(self, key: object) -> bool:
        self._note(key)
        return dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        self.whole = True
        return dict.__iter__(self)

    def __len__(self) -> int:
        self.whole = True
        return dict.__len__(self)

    def keys(self) -> Any:
        self.whole = True
        return dict.keys(self)

    def values(self) -> Any:
        self.whole = True
        return dict.values(self)

    def items(self) -> Any:
        self.whole = True
        return dict.items(self)


#: (op, operand ranks) -> the names of the attributes result_rank read for the first instruction
#: asked about (in order); absent: not asked yet
_NAMES: dict[tuple[Op, tuple[int, ...]], tuple[str, ...]] = {}
#: (op, operand ranks) where result_rank read every attribute: asked every time
_WHOLE: set[tuple[Op, tuple[int, ...]]] = set()
#: (op, operand ranks, types and values of the attributes _NAMES lists) -> result rank
_RANKS: dict[tuple[Op, tuple[int, ...], tuple], Optional[int]] = {}


def _value(attrs: Attrs, name: str) -> tuple[type, Any]:
    """The type and value of dict(attrs).get(name, _ABSENT), without building the dict (the last
    pair wins, as there); with the type, True and 1 (equal, of one hash) stay apart."""
    for key, value in reversed(attrs):
        if key == name:
            return value.__class__, value
    return object, _ABSENT


def expected_rank(op: Op, ranks: tuple[int, ...], attrs: Attrs) -> Optional[int]:
    """result_rank(op, ranks, dict(attrs)), remembered (RankError when result_rank raises it)."""
    key = (op, ranks)
    names = _NAMES.get(key)
    if names is not None:
        try:
            found = _RANKS.get((op, ranks, tuple([_value(attrs, n) for n in names])), -1)  # ranks: None or >= 0
        except TypeError:  # an unhashable attribute value: not remembered
            found = -1
        if found != -1:
            return found
    elif key in _WHOLE:
        return result_rank(op, ranks, dict(attrs))
    noted = _Noting(attrs)
    rank = result_rank(op, ranks, noted)
    if noted.whole:
        _WHOLE.add(key)
        return rank
    read = tuple([n for n, _ in noted.reads])
    if names is None:
        _NAMES[key] = names = read
    if read == names:  # remembered only under the names the lookup above reads
        try:
            _RANKS[(op, ranks, tuple([v for _, v in noted.reads]))] = rank
        except TypeError:
            pass
    return rank
