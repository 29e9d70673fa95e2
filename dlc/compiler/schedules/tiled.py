"""Matmul, dense, batch matmul, NHWC convolutions and pooling: one reduction, its innermost output axis vectorized.

Every kernel of this family has a single reduction block

    C[s0, …, u, v] (+)= f(A[…], B[…])   over reduction axes r…

whose innermost output axis v is spatial and is read contiguously (or not at all) by its
operands: N of a matmul `A[i, k] · B[k, n]`, the output channel of an NHWC convolution
with HWIO weights (depthwise included), the channel of NHWC pooling and means.

The schedule is the classic register-blocked micro-kernel:

    parallel for outer in (s0, …):                    # the outermost tiles, shared out over the cores
      for tile in (…, u / U, v / V):                  # the rest of the tiles, in order, on one core
        acc[U, V] = 0                                 # a local buffer LLVM keeps in registers
        for r…:                                       # the whole reduction, in its own order
            unrolled for ui < U: vectorized for vi < V:
                acc[ui, vi] (+)= f(A[…], B[…])
        C[tile] = epilogue(acc)                       # bias, activation, residual add, on the hot tile

V is one or two vector widths (four for matrix-vector products, whose rows are 1), U the
rows that still leave registers for the operands. Only the outermost tiles are shared out
(enough of them for every core several times), each core walking the rest in order: one
parallel loop over all the tiles was up to 1.6x slower (1x1 convolutions at 224x224).

Windowed kernels — every operand reads v: depthwise convolutions, pooling — get fewer rows
(4 rows of 2 vectors measured faster than 8 on a 224x224x64 depthwise convolution), and
their padding is read in place (a bounds test in the loop) instead of copied per tile:
that depthwise convolution timed alone on 2 cores, 3.1 → 0.7-1.0 ms (in a model, where its
13 MB input comes from memory, 3.3 → 1.8 ms). A convolution that sums over input channels
keeps the copy: the test in its reduction loop doubled its time.
"""

from __future__ import annotations

from dlc.compiler.schedules.base import CpuRule, divisor_at_most, inline_what_can_be, int_extent

PARALLEL_MIN_WORK = 1 << 15  # multiply-adds; below it the thread pool's wake-up costs more than it saves
TASKS_PER_CORE = 8  # outermost tiles shared out per core: enough to balance, few enough to keep the rest in order
WINDOWED_ROWS = 4  # register rows of a windowed kernel (measured: fewer than a matmul's 8 is faster)


class TiledReduction(CpuRule):
    family = "tiled reduction (matmul, dense, conv2d NHWC, pooling)"

    def schedule(self, sch, blocks, traits) -> bool:
        blocks = inline_what_can_be(sch, blocks)
        reductions = [b for b in blocks if b.is_reduction()]
        if len(reductions) != 1:
            return False
        main = reductions[0]
        after = blocks[blocks.index(main) + 1:]
        if len(after) > 1 or not all(b.is_injective() for b in blocks if b is not main):
            return False
        axes = _vector_and_row_axes(sch, main)
        if axes is None:
            return False
        v, u, windowed = axes
        pads = blocks[:blocks.index(main)]
        copied = [pad for pad in pads if not (windowed and _inlined(sch, pad))]
        tile = _tile(sch, main, after[0] if after else None, v, u, windowed, traits)
        for pad in copied:
            _pad_per_tile(sch, pad, tile)
        return True


def _vector_and_row_axes(sch, main):
    """Indices (into main's iters) of the vectorized axis v and the register-blocked row axis u (or None),
    and whether the kernel is windowed (every operand reads v); None if the kernel is not of this family.

    v is the innermost written axis; every operand must read it contiguously or not at all.
    """
    from tvm import tirx

    block = sch.get(main.block_rv)
    if len(block.writes) != 1:
        return None
    written = [r.min for r in block.writes[0].region]
    iter_vars = [i.var for i in main.iters]
    position = {var: n for n, var in enumerate(iter_vars)}
    if not written or not isinstance(written[-1], tirx.Var) or written[-1] not in position:
        return None
    v = position[written[-1]]
    if main.iters[v].kind != "S" or int_extent(sch, main.iters[v].loop_rv) is None:
        return None
    output = block.writes[0].source
    operands = [read for read in block.reads if not read.source.same_as(output)]
    if not all(_contiguous_or_absent(read, iter_vars[v]) for read in operands):
        return None
    windowed = bool(operands) and all(_reads(read, iter_vars[v]) for read in operands)
    rows = [position[e] for e in written[:-1][::-1] if isinstance(e, tirx.Var) and e in position]
    u = next((n for n in rows if main.iters[n].kind == "S" and (int_extent(sch, main.iters[n].loop_rv) or 1) > 1),
             None)
    return v, u, windowed


def _reads(region, var) -> bool:
    """Whether `region` reads `var` in any index."""
    return any(_stride(r.min, var) for r in region.region)


def _inlined(sch, pad) -> bool:
    """Inlines a padding block into its consumer (a bounds test where it reads); False if TVM refuses."""
    from tvm.s_tir.schedule import ScheduleError

    try:
        sch.compute_inline(pad.block_rv)
        return True
    except ScheduleError:
        return False


def _contiguous_or_absent(region, var) -> bool:
    """Whether `region` reads `var` only in its last index, with stride 1 (`var + c`), or not at all."""
    indices = [r.min for r in region.region]
    strides = [_stride(e, var) for e in indices]
    return all(s == 0 for s in strides[:-1]) and (not strides or strides[-1] in (0, 1))


def _stride(expr, var) -> int | None:
    """The coefficient of `var` in `expr` (0 if absent); None where `expr` is not linear in it."""
    from tvm import sym, tirx

    coefficients = sym.detect_linear_equation(expr, [var])
    if len(coefficients) != 2 or not isinstance(coefficients[0], tirx.IntImm):
        return None
    return int(coefficients[0])


def _tile(sch, main, epilogue, v: int, u: int | None, windowed: bool, traits):
    """Tiles, parallelizes and vectorizes `main` with its epilogue; returns the loop of one tile."""
    lanes = traits.lanes(sch.get(main.block_rv).writes[0].source.dtype.bits)
    loops = [i.loop_rv for i in main.iters]
    work = 1
    for loop in loops:
        work *= int_extent(sch, loop) or 1
    v_extent = int_extent(sch, loops[v])
    u_extent = int_extent(sch, loops[u]) if u is not None else 1
    vectors = 4 if u is None else 2  # a matrix-vector product has no rows to block: more vectors instead
    width = _vector_width(v_extent, lanes, vectors)
    accumulators = max(width // lanes, 1)
    rows = divisor_at_most(u_extent, min(WINDOWED_ROWS if windowed else 8,
                                         (traits.registers - 2 * accumulators - 2) // accumulators))
    v_outer, v_inner = sch.split(loops[v], [None, width])
    spatial_outer = []
    u_inner = None
    for n, info in enumerate(main.iters):
        if n == v:
            spatial_outer.append(v_outer)
        elif n == u:
            u_outer, u_inner = sch.split(loops[u], [None, rows])
            spatial_outer.append(u_outer)
        elif info.kind == "S":
            spatial_outer.append(loops[n])
    reduction = [loops[n] for n, info in enumerate(main.iters) if info.kind == "R"]
    inner = [u_inner] if u_inner is not None else []
    sch.reorder(*spatial_outer, *reduction, *inner, v_inner)
    shared, tile = _outer_and_tile(sch, spatial_outer, traits.cores * TASKS_PER_CORE)
    if traits.cores > 1 and work >= PARALLEL_MIN_WORK and (int_extent(sch, shared) or 0) > 1:
        sch.parallel(shared)
    write_back = sch.cache_write(main.block_rv, 0, "local")
    if epilogue is not None:
        sch.compute_inline(write_back)
        write_back = epilogue.block_rv
    sch.reverse_compute_at(write_back, tile, preserve_unit_loops=True)
    _vectorize_innermost(sch, write_back)
    if u_inner is not None:
        sch.unroll(u_inner)
    sch.vectorize(v_inner)
    if reduction:
        init = sch.decompose_reduction(main.block_rv, reduction[0])
        _vectorize_innermost(sch, init)
    return tile


def _outer_and_tile(sch, loops, enough: int):
    """`loops` (outermost first) fused in two: the outermost with at least `enough` iterations
    (all of them if they have fewer), and the rest, which is the tile loop (the same loop if none is left)."""
    count, iterations = 0, 1
    while count < len(loops) and iterations < enough:
        iterations *= int_extent(sch, loops[count]) or enough  # a symbolic extent counts as enough
        count += 1
    count = max(count, 1)
    outer = sch.fuse(*loops[:count]) if count > 1 else loops[0]
    rest = loops[count:]
    if not rest:
        return outer, outer
    return outer, sch.fuse(*rest) if len(rest) > 1 else rest[0]


def _pad_per_tile(sch, pad, tile) -> None:
    """Pads only the input window of each tile, into a buffer that stays in cache.

    Padding the whole input first writes and re-reads a copy of it (13 MB for a 224x224x64
    map): that traffic, not the arithmetic, was most of a depthwise convolution's time.
    """
    sch.compute_at(pad.block_rv, tile, preserve_unit_loops=True)
    _vectorize_innermost(sch, pad.block_rv)


def _vector_width(extent: int, lanes: int, vectors: int) -> int:
    """Whole vectors if the extent allows (24 channels on AVX-512: 8, not a 16 + 8 pair), else all of it."""
    for width in (lanes * vectors, lanes * 2, lanes, lanes // 2, lanes // 4):
        if width >= 2 and extent % width == 0:
            return width
    return extent if extent <= lanes else 1


def _vectorize_innermost(sch, block) -> None:
    loops = sch.get_loops(block)
    if loops and (int_extent(sch, loops[-1]) or 0) > 1:
        sch.vectorize(loops[-1])


def schedule_injective(sch, info, traits) -> None:
    """A spatial block: its loops fused, the innermost vector's worth vectorized, the rest shared out."""
    loops = sch.get_loops(info.block_rv)
    if not loops:
        return
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    extent = int_extent(sch, fused)
    if extent is None:
        return
    lanes = traits.lanes(sch.get(info.block_rv).writes[0].source.dtype.bits)
    width = divisor_at_most(extent, lanes * 2)
    if width > 1:
        outer, inner = sch.split(fused, [None, width])
        sch.vectorize(inner)
    else:
        outer = fused
    if traits.cores > 1 and extent >= 4 * PARALLEL_MIN_WORK // 8:
        sch.parallel(outer)
