"""ResNet-18 (He et al. 2016) from torchvision with a small logit head."""

from __future__ import annotations

from torch import nn

MIN_INPUT_SIZE = 32  # five stride-2 stages leave one cell at 32 px


def build_resnet18(input_size: int = 224, num_outputs: int = 1) -> nn.Module:
    """torchvision's resnet18, randomly initialised, with a ``num_outputs``-logit ``fc``."""
    # imported here, not at the top: mesonet and cnn5 jobs skip about 2 s of start-up
    from torchvision.models import resnet18

    return resnet18(weights=None, num_classes=num_outputs)
