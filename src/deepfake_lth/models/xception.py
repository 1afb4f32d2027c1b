"""Xception (Chollet, CVPR 2017) as used by FaceForensics++ (Rössler et al. 2019).

The module names and the order of layers follow the ``pretrainedmodels`` / FaceForensics++
implementation, so an ImageNet ``state_dict`` of that code loads key for key (its head,
``last_linear`` or ``fc``, is skipped). Two changes for Grad-CAM: every ReLU is its own
module (the original shares one ``relu`` module between several places, which would fire a
hook more than once), and the ReLU after the last separable convolution (``relu4``) is not
in place, so its output survives the forward pass. Global average pooling is adaptive, so
any side ≥ 71 works (the smallest side Keras documents for Xception).
"""

from __future__ import annotations

import torch
from torch import nn

MIN_INPUT_SIZE = 71


class SeparableConv2d(nn.Module):
    """Depthwise conv (``conv1``) followed by a pointwise 1×1 conv (``pointwise``)."""

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int = 1, stride: int = 1, padding: int = 0
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_in, kernel_size, stride, padding, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.conv1(x))


class Block(nn.Module):
    """Residual block of ``reps`` (ReLU → separable conv → BN), optional strided max-pool,
    and a 1×1 strided conv + BN on the skip path when the shape changes."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        reps: int,
        stride: int = 1,
        start_with_relu: bool = True,
        grow_first: bool = True,
    ) -> None:
        super().__init__()
        if c_out != c_in or stride != 1:
            self.skip = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            self.skipbn = nn.BatchNorm2d(c_out)
        else:
            self.skip = None
            self.skipbn = None

        rep: list[nn.Module] = []
        filters = c_in
        if grow_first:
            rep += [
                nn.ReLU(inplace=True),
                SeparableConv2d(c_in, c_out, 3, 1, 1),
                nn.BatchNorm2d(c_out),
            ]
            filters = c_out
        for _ in range(reps - 1):
            rep += [
                nn.ReLU(inplace=True),
                SeparableConv2d(filters, filters, 3, 1, 1),
                nn.BatchNorm2d(filters),
            ]
        if not grow_first:
            rep += [
                nn.ReLU(inplace=True),
                SeparableConv2d(c_in, c_out, 3, 1, 1),
                nn.BatchNorm2d(c_out),
            ]
        if not start_with_relu:
            rep = rep[1:]
        else:
            # the block's input is also its skip connection: never overwrite it
            rep[0] = nn.ReLU(inplace=False)
        if stride != 1:
            rep.append(nn.MaxPool2d(3, stride, 1))
        self.rep = nn.Sequential(*rep)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.rep(inp)
        skip = self.skipbn(self.skip(inp)) if self.skip is not None else inp
        return x + skip


class Xception(nn.Module):
    """Entry flow (conv 32@3×3 s2, conv 64@3×3, blocks 128/256/728), middle flow (8 blocks
    of 728), exit flow (block 728→1024, separable convs 1536 and 2048), BN + ReLU, global
    average pooling, linear. 20,811,050 parameters with 2 outputs (20,809,001 with 1)."""

    def __init__(self, num_outputs: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu2 = nn.ReLU(inplace=True)

        self.block1 = Block(64, 128, 2, 2, start_with_relu=False, grow_first=True)
        self.block2 = Block(128, 256, 2, 2, start_with_relu=True, grow_first=True)
        self.block3 = Block(256, 728, 2, 2, start_with_relu=True, grow_first=True)
        self.block4 = Block(728, 728, 3, 1)
        self.block5 = Block(728, 728, 3, 1)
        self.block6 = Block(728, 728, 3, 1)
        self.block7 = Block(728, 728, 3, 1)
        self.block8 = Block(728, 728, 3, 1)
        self.block9 = Block(728, 728, 3, 1)
        self.block10 = Block(728, 728, 3, 1)
        self.block11 = Block(728, 728, 3, 1)
        self.block12 = Block(728, 1024, 2, 2, start_with_relu=True, grow_first=False)

        self.conv3 = SeparableConv2d(1024, 1536, 3, 1, 1)
        self.bn3 = nn.BatchNorm2d(1536)
        self.relu3 = nn.ReLU(inplace=True)
        self.conv4 = SeparableConv2d(1536, 2048, 3, 1, 1)
        self.bn4 = nn.BatchNorm2d(2048)
        self.relu4 = nn.ReLU(inplace=False)  # Grad-CAM target: keep its output intact
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional feature map (after ``bn4`` and ``relu4``)."""
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        for i in range(1, 13):
            x = getattr(self, f"block{i}")(x)
        x = self.relu3(self.bn3(self.conv3(x)))
        return self.relu4(self.bn4(self.conv4(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def build_xception(input_size: int = 299, num_outputs: int = 1) -> nn.Module:
    """Xception; ``input_size`` is accepted for a uniform builder signature and not needed."""
    return Xception(num_outputs=num_outputs)
