"""FLOPs and MACs per op against values computed by hand."""

from dlc.analysis.flops import Cost, node_cost


def test_conv_counts_one_mac_per_weight_per_output_pixel_plus_the_bias():
    # 16 output channels x 8x8 pixels, each a 3x3x3 window: 16*64*27 = 27,648 MACs; bias: 1,024 adds
    cost = node_cost("Conv", {"pads": [1, 1, 1, 1]}, [(1, 3, 8, 8), (16, 3, 3, 3), (16,)], [(1, 16, 8, 8)])
    assert cost == Cost(macs=27_648, flops=2 * 27_648 + 1_024)


def test_depthwise_conv_divides_input_channels_by_the_group():
    cost = node_cost("Conv", {"group": 3}, [(1, 3, 8, 8), (3, 1, 3, 3)], [(1, 3, 8, 8)])
    assert cost == Cost(macs=3 * 64 * 9, flops=2 * 3 * 64 * 9)


def test_gemm_with_transposed_b_and_bias():
    cost = node_cost("Gemm", {"transB": 1}, [(4, 1024), (10, 1024), (10,)], [(4, 10)])
    assert cost == Cost(macs=4 * 10 * 1024, flops=2 * 4 * 10 * 1024 + 40)


def test_batched_matmul_and_conv_transpose():
    assert node_cost("MatMul", {}, [(2, 5, 8), (8, 3)], [(2, 5, 3)]) == Cost(2 * 5 * 3 * 8, 2 * 2 * 5 * 3 * 8)
    # each of 4*4 input pixels x 3 channels scatters into 2 output channels x 2x2 kernel
    assert node_cost("ConvTranspose", {}, [(1, 3, 4, 4), (3, 2, 2, 2)], [(1, 2, 8, 8)]) == Cost(384, 768)


def test_lstm_counts_four_gates_per_step():
    cost = node_cost("LSTM", {"hidden_size": 16}, [(5, 2, 8)], [(5, 1, 2, 16)])
    assert cost == Cost(macs=5 * 2 * 4 * 16 * (8 + 16), flops=2 * 5 * 2 * 4 * 16 * (8 + 16))


def test_unknown_shapes_and_ops_have_no_count():
    assert node_cost("Conv", {}, [None, (16, 3, 3, 3)], [None]) is None
    assert node_cost("SomeCustomOp", {}, [(2, 2)], [(2, 2)]) is None
    assert node_cost("Reshape", {}, [(2, 2), (1,)], [(4,)]) == Cost(0, 0)
