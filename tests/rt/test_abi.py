"""The runtime's C interface has one declaration, noma_rt.h: the ctypes declarations and the
lowering's LLVM declarations are generated from it (noma.rt.abi), and the copies that are not
generated (the ctypes struct mirrors, the compiler's enum numbering, the %NomaTensor type) are
checked against it here."""

from __future__ import annotations

import ctypes

import pytest

from noma.rt import abi, native_lib, native_types

SAMPLE = """
/* a comment with a prototype inside: void noma_hidden(void); */
#ifdef X
typedef float real;
#endif
typedef struct { real *data; int64_t rank; int64_t dims[4]; } NomaTensor;
enum { NOMA_A_ONE = 1, NOMA_A_NONE = -1 };
int32_t noma_invoke(NomaCtx *c, void (*fn)(void)); /* trailing comment */
const char *noma_name(int64_t slot);
void noma_many(const char **names,
               const NomaTensor *t, real x);
void noma_none(void);
"""


def test_parser_reads_prototypes_enums_and_structs():
    protos = abi.parse_prototypes(SAMPLE)
    assert list(protos) == ["noma_invoke", "noma_name", "noma_many", "noma_none"]
    assert protos["noma_invoke"] == abi.Prototype("noma_invoke", "int32_t", ("NomaCtx *", abi.FUNCTION_POINTER))
    assert protos["noma_name"].ret == "const char *"
    assert protos["noma_many"].args == ("const char **", "const NomaTensor *", "real")
    assert protos["noma_none"].args == ()
    assert abi.parse_enums(SAMPLE) == {"NOMA_A_ONE": 1, "NOMA_A_NONE": -1}
    assert abi.parse_structs(SAMPLE) == {
        "NomaTensor": (("real *", "data", 0), ("int64_t", "rank", 0), ("int64_t", "dims", 4))}


def test_llvm_codes():
    assert abi.llvm_signature(abi.parse_prototypes(SAMPLE)["noma_many"]) == "v:ppr"
    assert abi.llvm_signatures()["noma_fail"] == "v:ilp"
    assert abi.llvm_signatures()["noma_matmul"] == "v:ppplllii"
    with pytest.raises(ValueError, match="no LLVM code"):
        abi.llvm_code("float")


def test_header_declares_what_the_product_uses():
    protos = abi.prototypes()
    assert len(protos) > 100
    for name in ("noma_ctx_new", "noma_opt_steps", "noma_checkpoint_load", "noma_test_reached"):
        assert name in protos


@pytest.mark.parametrize("dtype", ["f64", "f32"])
def test_ctypes_signatures_follow_the_header(dtype):
    real = native_lib.real_ctype(dtype)
    protos = abi.prototypes()
    assert native_lib.ctypes_signature(protos["noma_fail_check"], dtype) == (
        None, [ctypes.c_char_p, real, ctypes.c_int64])
    res, args = native_lib.ctypes_signature(protos["noma_param"], dtype)
    assert res is ctypes.POINTER(native_lib.tensor_class(dtype)) and args == [ctypes.c_int64]
    # byte buffers (a length beside them) come back as addresses, strings as bytes
    assert native_lib.ctypes_signature(protos["noma_output_data"], dtype)[0] is ctypes.c_void_p
    assert native_lib.ctypes_signature(protos["noma_error_message"], dtype)[0] is ctypes.c_char_p
    for proto in protos.values():  # every C type of the header has a mapping
        native_lib.ctypes_signature(proto, dtype)


def test_loaded_runtime_has_every_declared_function():
    try:
        lib = native_lib.load_runtime("f64")
    except native_lib.CompilerNotFound as exc:  # pragma: no cover
        pytest.skip(str(exc))
    for name, proto in abi.prototypes().items():
        fn = getattr(lib, name)
        assert (fn.restype, fn.argtypes) == native_lib.ctypes_signature(proto, "f64"), name


def _ctypes_fields(cls: type) -> list[tuple[str, object]]:
    return list(cls._fields_)  # type: ignore[attr-defined]


def test_struct_mirrors_match_the_header():
    c_types = {"int32_t": ctypes.c_int32, "int64_t": ctypes.c_int64, "double": ctypes.c_double}
    structs = abi.structs()
    for cls in (native_types.NomaTensor, native_types.NomaTensorF32, native_types.NomaEvent):
        name = "NomaTensor" if cls is native_types.NomaTensorF32 else cls.__name__
        want = structs[name]
        got = _ctypes_fields(cls)
        assert [f for _, f, _ in want] == [f for f, _ in got], name
        for (ctype, field, count), (_, typ) in zip(want, got):
            if ctype == "real *":
                real = ctypes.c_float if cls is native_types.NomaTensorF32 else ctypes.c_double
                assert typ is ctypes.POINTER(real)
            else:
                assert typ == (c_types[ctype] * count if count else c_types[ctype]), field
    assert ctypes.sizeof(native_types.NomaTensor) == 48 and ctypes.sizeof(native_types.NomaEvent) == 128


def test_enum_copies_match_the_header():
    from noma.compiler.llvm import basics
    from noma.compiler.middle import ir
    from noma import optimizers

    errors = abi.enum_group("NOMA_ERR_")
    assert (basics.ERR_TYPE, basics.ERR_SHAPE, basics.ERR_RUNTIME) == (
        errors["type"], errors["shape"], errors["runtime"])
    assert ir.POLICIES == abi.enum_group("NOMA_POLICY_")
    assert {o.name: o.kind for o in optimizers.OPTIMIZERS.values()} == abi.enum_group("NOMA_OPT_", skip=("NONE",))
    assert native_lib.OPTIMIZERS == abi.enum_group("NOMA_OPT_", skip=("NONE",))
    assert native_types.EVENT_KINDS[3] == "opt_change"


def test_copies_of_the_numbering_outside_rt_match_the_header():
    """Tables that name the header's numbers for display or for the oracle."""
    from noma.compiler.interp import interp_resize
    from noma.rt import runtime

    policies = abi.enum_group("NOMA_POLICY_")
    assert runtime.POLICY_NAMES == {v: k for k, v in policies.items()}
    assert set(runtime.EVENT_KINDS) == set(native_types.EVENT_KINDS)  # display names of each kind
    oracle = {name: getattr(interp_resize, name.upper()) for name in policies}
    assert oracle == policies


def test_llvm_tensor_type_matches_the_header():
    from llvmlite import ir as ll

    from noma.compiler.llvm.module import ModuleContext

    body = ModuleContext("t", "f64").tensor.elements
    assert [str(t) for t in body] == ["ptr", "i64", "[4 x i64]"]
    assert [(c, n) for c, _, n in abi.structs()["NomaTensor"]] == [("real *", 0), ("int64_t", 0), ("int64_t", 4)]
    assert isinstance(body[0], ll.PointerType)
