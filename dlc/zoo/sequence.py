"""Sequence classifiers of the zoo. Every model takes float32 [batch, steps, features]."""

from __future__ import annotations

import math

import torch
from torch import nn


class RecurrentClassifier(nn.Module):
    """An LSTM or GRU over the sequence; the last step's output (both directions) feeds a linear head."""

    def __init__(self, cell: type[nn.Module], input_shape, hidden, layers, bidirectional, num_classes, dropout):
        super().__init__()
        _, features = input_shape
        self.rnn = cell(features, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
                        dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), num_classes)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y[:, -1])


def LSTMClassifier(**kwargs):
    return RecurrentClassifier(nn.LSTM, **kwargs)


def GRUClassifier(**kwargs):
    return RecurrentClassifier(nn.GRU, **kwargs)


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product attention written out, so it exports to plain ONNX ops."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads, self.head_width = heads, width // heads
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)

    def forward(self, x):
        batch, steps, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, steps, 3, self.heads, self.head_width).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.head_width), dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(batch, steps, width))


class EncoderBlock(nn.Module):
    """Pre-norm Transformer encoder block: x + attention(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = SelfAttention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(2 * width, width))

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def sinusoidal_positions(steps: int, width: int) -> torch.Tensor:
    """The fixed encoding of "Attention is all you need": sin/cos of position over geometric wavelengths."""
    position = torch.arange(steps, dtype=torch.float32)[:, None]
    rates = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(steps, width)
    table[:, 0::2], table[:, 1::2] = torch.sin(position * rates), torch.cos(position * rates)
    return table[None]


class TransformerClassifier(nn.Module):
    """Input projection plus sinusoidal positions, encoder blocks, mean over steps, linear head."""

    def __init__(self, input_shape, width, heads, layers, num_classes, dropout):
        super().__init__()
        steps, features = input_shape
        self.embed = nn.Linear(features, width)
        self.register_buffer("position", sinusoidal_positions(steps, width))
        self.blocks = nn.Sequential(*[EncoderBlock(width, heads, dropout) for _ in range(layers)])
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, num_classes)

    def forward(self, x):
        h = self.blocks(self.embed(x) + self.position)
        return self.head(self.norm(h).mean(dim=1))
