"""Meso-4 (Afchar et al., WIFS 2018), the compact mesoscopic deepfake detector."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

MIN_INPUT_SIZE = 32  # four poolings (2, 2, 2, 4) leave one cell at 32 px


def _block(c_in: int, c_out: int, kernel: int, pool: int) -> nn.Sequential:
    """conv (padding same) → ReLU → BN → max-pool, in the order of the original Keras code."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2),
            relu=nn.ReLU(inplace=False),
            bn=nn.BatchNorm2d(c_out),
            pool=nn.MaxPool2d(pool),
        )
    )


def flatten_side(input_size: int) -> int:
    """Side of the last feature map: the input after poolings of 2, 2, 2 and 4 (floor)."""
    return input_size // 2 // 2 // 2 // 4


class Meso4(nn.Module):
    """Meso-4 with its flatten size computed from the input side at build time.

    Trainable parameters at 256×256 (the paper's 27,977):
      block1 conv 3→8, 3×3:  3·8·9 + 8   =    224;  BN 2·8  =  16
      block2 conv 8→8, 5×5:  8·8·25 + 8  =  1,608;  BN 2·8  =  16
      block3 conv 8→16, 5×5: 8·16·25 + 16 = 3,216;  BN 2·16 =  32
      block4 conv 16→16, 5×5: 16·16·25 + 16 = 6,416; BN 2·16 = 32
      256 / (2·2·2·4) = 8 → flatten 16·8·8 = 1,024
      fc1 1,024→16: 1,024·16 + 16 = 16,400;  fc2 16→1: 16 + 1 = 17
      total 224+16+1,608+16+3,216+32+6,416+32+16,400+17 = 27,977
    At 128×128 the flatten is 16·4·4 = 256, fc1 = 4,112, total 15,689 ("0.015M").
    """

    def __init__(self, input_size: int = 256, num_outputs: int = 1) -> None:
        super().__init__()
        side = flatten_side(input_size)
        if side < 1:
            raise ValueError(f"Meso4 needs an input side of at least {MIN_INPUT_SIZE}")
        self.block1 = _block(3, 8, 3, 2)
        self.block2 = _block(8, 8, 5, 2)
        self.block3 = _block(8, 16, 5, 2)
        self.block4 = _block(16, 16, 5, 4)
        self.classifier = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                drop1=nn.Dropout(0.5),
                fc1=nn.Linear(16 * side * side, 16),
                act=nn.LeakyReLU(0.1, inplace=False),
                drop2=nn.Dropout(0.5),
                fc2=nn.Linear(16, num_outputs),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block4(self.block3(self.block2(self.block1(x))))
        return self.classifier(x)


def build_mesonet(input_size: int = 256, num_outputs: int = 1) -> nn.Module:
    """Meso-4 for square inputs of side ``input_size``."""
    return Meso4(input_size=input_size, num_outputs=num_outputs)
