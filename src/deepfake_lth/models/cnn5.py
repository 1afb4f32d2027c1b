"""CNN-5: the paper's five-block convolutional baseline with batch normalisation."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

CHANNELS = (16, 32, 64, 128, 176)
MIN_INPUT_SIZE = 32  # five poolings of 2 leave one cell at 32 px


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(c_in, c_out, 3, padding=1),
            bn=nn.BatchNorm2d(c_out),
            relu=nn.ReLU(inplace=False),
            pool=nn.MaxPool2d(2),
        )
    )


class CNN5(nn.Module):
    """Five blocks of conv 3×3 (padding 1) → BN → ReLU → max-pool 2, channels 16-32-64-128-176,
    then global average pooling → dropout 0.5 → linear.

    Trainable parameters with one output: 301,377 (the paper's "0.300M"):
      convs 448 + 4,640 + 18,496 + 73,856 + 202,928 = 300,368
      BN    2·(16 + 32 + 64 + 128 + 176)             =     832
      fc    176 + 1                                  =     177
    Any side ≥ 32 works; the linear layer does not depend on the input side.
    """

    def __init__(self, num_outputs: int = 1, channels: tuple[int, ...] = CHANNELS) -> None:
        super().__init__()
        c_in = 3
        blocks = []
        for i, c in enumerate(channels, start=1):
            blocks.append((f"block{i}", _block(c_in, c)))
            c_in = c
        self.features = nn.Sequential(OrderedDict(blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(c_in, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.fc(self.dropout(x))


def build_cnn5(input_size: int = 128, num_outputs: int = 1) -> nn.Module:
    """CNN-5; ``input_size`` is accepted for a uniform builder signature and not needed."""
    return CNN5(num_outputs=num_outputs)
