"""The `int8_dot_*` kernels of dlc.compiler.int8_dot: register-blocked, their 16×4 byte dot products tensorized.

    parallel for outer in (…):                      # as TiledReduction shares out its tiles
      for tile in (rows / U, channels / (16·A)):
        acc[U, A·16] = 0                            # int32, in registers
        for r…, k / 4:                              # the reduction, input channels 4 at a time
          unrolled for u < U, a < A:
            acc[u, a·16 : a·16 + 16] += dot16x4(x[u, k:k+4], w[a, k/4])    # one vpdpbusd
        C[tile] = epilogue(acc)                     # zero-point sums, requantize: fused

U·A accumulators stay in registers with room for the operands (32 on AVX-512).
"""

from __future__ import annotations

from dlc.compiler.int8_dot import GROUP, LANES
from dlc.compiler.schedules.base import CpuRule, divisor_at_most, inline_what_can_be, int_extent
from dlc.compiler.schedules.tiled import (
    PARALLEL_MIN_WORK,
    TASKS_PER_CORE,
    _outer_and_tile,
    _pad_per_tile,
    _vectorize_innermost,
)

VNNI_INTRIN = "dlc_dot_16x4_u8i8i32_vnni"


def vnni_intrinsic() -> str:
    """A 16x4 VNNI dot product as a tensor intrinsic (registered once); returns its name.

    c[i] += Σ_k a[k]·b[i, k] for 16 lanes i and 4 bytes k: one vpdpbusd. TVM 0.27 ships one
    (`dot_16x4_vnni`) that passes int32 vectors to `llvm.x86.avx512.vpdpbusd.512`, which the
    LLVM in its wheel declares on byte vectors (<16 x i32>, <64 x i8>, <64 x i8>): modules
    using it fail LLVM's verifier. Importing it also imports every target's intrinsics (a
    minute, the CUDA ones).
    """
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    if TensorIntrin.get(VNNI_INTRIN, allow_missing=True) is not None:
        return VNNI_INTRIN

    @T.prim_func(s_tir=True)
    def dot(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
            c: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            for i, k in T.grid(16, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    c[vi] = c[vi] + T.cast(a[vk], "int32") * T.cast(b[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def vnni(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
             c: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            a_i32 = T.reinterpret(a.vload([0], "uint8x4"), dtype="int32")
            c[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"), c.vload([0], dtype="int32x16"),
                T.reinterpret(T.broadcast(a_i32, 16), dtype="int8x64"), b.vload([0, 0], dtype="int8x64"),
                dtype="int32x16")

    TensorIntrin.register(VNNI_INTRIN, dot, vnni)
    return VNNI_INTRIN


class Int8Dot(CpuRule):
    family = "int8 dot product (VNNI)"

    def schedule(self, sch, blocks, traits) -> bool:
        if traits.int8_dot is None:
            return False
        blocks = inline_what_can_be(sch, blocks)
        mains = [b for b in blocks if b.is_reduction()]
        if len(mains) != 1 or not sch.get(mains[0].block_rv).name_hint.startswith("int8_dot"):
            return False
        main = mains[0]
        after = blocks[blocks.index(main) + 1:]
        if len(after) > 1:
            return False
        _tile(sch, main, after[0] if after else None, blocks[:blocks.index(main)], traits)
        return True


def _tile(sch, main, epilogue, pads, traits) -> None:
    iters = main.iters
    loops = [i.loop_rv for i in iters]
    spatial = [n for n, i in enumerate(iters) if i.kind == "S"]
    reduction = [n for n, i in enumerate(iters) if i.kind == "R"]
    v, k = spatial[-1], reduction[-1]
    u = next((n for n in spatial[-2::-1] if (int_extent(sch, loops[n]) or 1) > 1), None)
    work = 1
    for loop in loops:
        work *= int_extent(sch, loop) or 1
    blocks_of_16 = int_extent(sch, loops[v]) // LANES
    a = divisor_at_most(blocks_of_16, 4 if u is None else 2)
    rows = divisor_at_most(int_extent(sch, loops[u]), min(8, (traits.registers - 4) // a)) if u is not None else 1
    v_outer, v_inner = sch.split(loops[v], [None, LANES])
    v_outer, v_block = sch.split(v_outer, [None, a])
    k_outer, k_inner = sch.split(loops[k], [None, GROUP])
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
    sch.tensorize(v_inner, vnni_intrinsic())
    if u_inner is not None:
        sch.unroll(u_inner)
    sch.unroll(v_block)
