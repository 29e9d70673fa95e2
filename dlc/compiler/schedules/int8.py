"""The `int8_dot_*` kernels of dlc.compiler.int8_dot: register-blocked, their integer dot products tensorized.

With L lanes of G products (VNNI: 16×4 bytes; vpmaddubsw: 16×4 or 8×4 bytes; vpmaddwd: 16×2 or 8×2 int16):

    parallel for outer in (…):                      # as TiledReduction shares out its tiles
      for tile in (rows / U, channels / (L·A)):
        acc[U, A·L] = 0                             # int32, in registers
        for r…, k / G:                              # the reduction, input channels G at a time
          unrolled for u < U, a < A:
            acc[u, a·L : a·L + L] += dotLxG(x[u, k:k+G], w[a, k/G])    # one instruction
        C[tile] = epilogue(acc)                     # zero-point sums, requantize: fused

U·A accumulators stay in registers with room for the operands (32 on AVX-512, 16 on AVX2).
"""

from __future__ import annotations

from dlc.compiler.int8_dot import kernel_dot
from dlc.compiler.schedules.base import CpuRule, divisor_at_most, inline_what_can_be, int_extent
from dlc.compiler.schedules.tiled import (
    PARALLEL_MIN_WORK,
    TASKS_PER_CORE,
    _outer_and_tile,
    _pad_per_tile,
    _vectorize_innermost,
)

def dot_intrinsic(dot) -> str:
    """`dot` (a dlc.compiler.int8_dot.DotProduct) as a tensor intrinsic, registered once; returns its name.

    c[i] += Σ_k a[k]·b[i, k] for `lanes` int32 lanes i and `group` values k: one instruction.
    TVM 0.27 ships a VNNI one (`dot_16x4_vnni`) that passes int32 vectors to
    `llvm.x86.avx512.vpdpbusd.512`, which the LLVM in its wheel declares on byte vectors
    (<16 x i32>, <64 x i8>, <64 x i8>): modules using it fail LLVM's verifier. Importing it
    also imports every target's intrinsics (a minute, the CUDA ones).
    """
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    name = f"dlc_dot_{dot.name}"
    if TensorIntrin.get(name, allow_missing=True) is not None:
        return name
    lanes, group, data, weights = dot.lanes, dot.group, dot.data, dot.weights
    bits = {"uint8": 8, "int8": 8, "int16": 16}[data]
    packed_a = f"{'int8' if bits == 8 else 'int16'}x{lanes * group}"  # a broadcast to every lane, as LLVM types it

    @T.prim_func(s_tir=True)
    def desc(a: T.Buffer((group,), data, offset_factor=1), b: T.Buffer((lanes, group), weights, offset_factor=1),
             c: T.Buffer((lanes,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:lanes], a[0:group], b[0:lanes, 0:group])
            T.writes(c[0:lanes])
            for i, k in T.grid(lanes, group):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    c[vi] = c[vi] + T.cast(a[vk], "int32") * T.cast(b[vi, vk], "int32")

    # TVMScript parses a function where it is defined: only the one `dot` uses is
    if dot.name == "vnni":
        @T.prim_func(s_tir=True)
        def accumulating(a: T.Buffer((group,), data, offset_factor=1),
                         b: T.Buffer((lanes, group), weights, offset_factor=1),
                         c: T.Buffer((lanes,), "int32", offset_factor=1)) -> None:  # vpdpbusd adds into c itself
            with T.sblock("root"):
                T.reads(c[0:lanes], a[0:group], b[0:lanes, 0:group])
                T.writes(c[0:lanes])
                a_i32 = T.reinterpret(a.vload([0], f"{data}x{group}"), dtype="int32")
                c[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(dot.llvm), c.vload([0], dtype=f"int32x{lanes}"),
                    T.reinterpret(T.broadcast(a_i32, lanes), dtype=packed_a), b.vload([0, 0], dtype=packed_a),
                    dtype=f"int32x{lanes}")

        impl = accumulating
    elif dot.pairs:
        @T.prim_func(s_tir=True)
        def pairs(a: T.Buffer((group,), data, offset_factor=1), b: T.Buffer((lanes, group), weights, offset_factor=1),
                  c: T.Buffer((lanes,), "int32", offset_factor=1)) -> None:  # vpmaddubsw, its int16 pairs by vpmaddwd
            with T.sblock("root"):
                T.reads(c[0:lanes], a[0:group], b[0:lanes, 0:group])
                T.writes(c[0:lanes])
                a_i32 = T.reinterpret(a.vload([0], f"{data}x{group}"), dtype="int32")
                c[T.ramp(T.int32(0), 1, lanes)] = c.vload([0], dtype=f"int32x{lanes}") + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(dot.pairs), T.call_llvm_pure_intrin(
                        T.llvm_lookup_intrinsic_id(dot.llvm), T.reinterpret(T.broadcast(a_i32, lanes), dtype=packed_a),
                        b.vload([0, 0], dtype=packed_a), dtype=f"int16x{lanes * 2}"),
                    T.broadcast(T.int16(1), lanes * 2), dtype=f"int32x{lanes}")

        impl = pairs
    else:
        @T.prim_func(s_tir=True)
        def summing(a: T.Buffer((group,), data, offset_factor=1), b: T.Buffer((lanes, group), weights, offset_factor=1),
                    c: T.Buffer((lanes,), "int32", offset_factor=1)) -> None:  # vpmaddwd's sums are added to c
            with T.sblock("root"):
                T.reads(c[0:lanes], a[0:group], b[0:lanes, 0:group])
                T.writes(c[0:lanes])
                a_i32 = T.reinterpret(a.vload([0], f"{data}x{group}"), dtype="int32")
                c[T.ramp(T.int32(0), 1, lanes)] = c.vload([0], dtype=f"int32x{lanes}") + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(dot.llvm), T.reinterpret(T.broadcast(a_i32, lanes), dtype=packed_a),
                    b.vload([0, 0], dtype=packed_a), dtype=f"int32x{lanes}")

        impl = summing

    TensorIntrin.register(name, desc, impl)
    return name


class Int8Dot(CpuRule):
    family = "int8 dot product (VNNI, vpmaddubsw, vpmaddwd)"

    def schedule(self, sch, blocks, traits) -> bool:
        if traits.int8_dot is None:
            return False
        blocks = inline_what_can_be(sch, blocks)
        mains = [b for b in blocks if b.is_reduction()]
        if len(mains) != 1 or (dot := kernel_dot(sch.get(mains[0].block_rv).name_hint)) is None:
            return False
        main = mains[0]
        after = blocks[blocks.index(main) + 1:]
        if len(after) > 1:
            return False
        _tile(sch, main, after[0] if after else None, blocks[:blocks.index(main)], traits, dot)
        return True


def _tile(sch, main, epilogue, pads, traits, dot) -> None:
    iters = main.iters
    loops = [i.loop_rv for i in iters]
    spatial = [n for n, i in enumerate(iters) if i.kind == "S"]
    reduction = [n for n, i in enumerate(iters) if i.kind == "R"]
    v, k = spatial[-1], reduction[-1]
    u = next((n for n in spatial[-2::-1] if (int_extent(sch, loops[n]) or 1) > 1), None)
    work = 1
    for loop in loops:
        work *= int_extent(sch, loop) or 1
    blocks = int_extent(sch, loops[v]) // dot.lanes
    a = divisor_at_most(blocks, 4 if u is None else 2)
    spare = 5 if dot.pairs else 4  # the operands; with pairs also the int16 ones
    rows = divisor_at_most(int_extent(sch, loops[u]), min(8, (traits.registers - spare) // a)) if u is not None else 1
    v_outer, v_inner = sch.split(loops[v], [None, dot.lanes])
    v_outer, v_block = sch.split(v_outer, [None, a])
    k_outer, k_inner = sch.split(loops[k], [None, dot.group])
    spatial_outer, u_inner = [], None
    for n in spatial:
        if n == v:
            spatial_outer.append(v_outer)
        elif n == u:
            u_outer, u_inner = sch.split(loops[u], [None, rows])
            spatial_outer.append(u_outer)
        else:
            spatial_outer.append(loops[n])
    reduction_outer = [loops[n] for n in reduction[:-1]] + [k_outer]
    inner = [u_inner] if u_inner is not None else []
    sch.reorder(*spatial_outer, *reduction_outer, *inner, v_block, v_inner, k_inner)
    shared, tile = _outer_and_tile(sch, spatial_outer, traits.cores * TASKS_PER_CORE)
    if traits.cores > 1 and work >= PARALLEL_MIN_WORK and (int_extent(sch, shared) or 0) > 1:
        sch.parallel(shared)
    # The accumulators are the kernel's own int32 intermediate, whose allocation shrinks to one tile once the
    # epilogue runs per tile (TVM's tensor intrinsics match global buffers, not a "local" cache of them).
    if epilogue is not None:
        sch.reverse_compute_at(epilogue.block_rv, tile, preserve_unit_loops=True)
        _vectorize_innermost(sch, epilogue.block_rv)
    for pad in pads:  # the padded input window of each tile, before the reduction is split in two
        _pad_per_tile(sch, pad, tile)
    init = sch.decompose_reduction(main.block_rv, reduction_outer[0])
    _vectorize_innermost(sch, init)
    sch.tensorize(v_inner, dot_intrinsic(dot))
    if u_inner is not None:
        sch.unroll(u_inner)
    sch.unroll(v_block)
