"""FashionInception: a compact InceptionV1-shaped CNN for 28×28 grey images.

Mixed blocks have InceptionV1's four parallel branches (1×1; 1×1 bottleneck → 3×3;
1×1 bottleneck → 5×5; 3×3 max-pool → 1×1), concatenated along channels, so the layer map
(mixed layers plus the bottlenecks feeding their 3×3 and 5×5 branches) mirrors googlenet's.
"""
from __future__ import annotations

import torch
from torch import nn

CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
MEAN, STD = 0.2860, 0.3530


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Mixed(nn.Module):
    """InceptionV1 mixed block; output channels = b1 + b3 + b5 + pool."""

    def __init__(self, in_channels: int, b1: int, b3_reduce: int, b3: int, b5_reduce: int, b5: int, pool: int):
        super().__init__()
        self.branch1x1 = ConvBNReLU(in_channels, b1, 1)
        self.branch3x3_bottleneck = ConvBNReLU(in_channels, b3_reduce, 1)
        self.branch3x3 = ConvBNReLU(b3_reduce, b3, 3)
        self.branch5x5_bottleneck = ConvBNReLU(in_channels, b5_reduce, 1)
        self.branch5x5 = ConvBNReLU(b5_reduce, b5, 5)
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), ConvBNReLU(in_channels, pool, 1))
        self.out_channels = b1 + b3 + b5 + pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3(self.branch3x3_bottleneck(x)),
            self.branch5x5(self.branch5x5_bottleneck(x)),
            self.branch_pool(x),
        ], dim=1)


class FashionInception(nn.Module):
    """28×28×1 → conv 28² → pool → conv, mixed3a, mixed3b at 14² → pool → mixed4a, mixed4b at 7² → logits.

    `in_channels` and `stem_stride` adapt it to other inputs: the Parts model takes 64×64 RGB with a
    stride-2 first conv (mixed3 at 16², mixed4 at 8²).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, stem_stride: int = 1):
        super().__init__()
        self.conv1 = ConvBNReLU(in_channels, 24, 3, stem_stride)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = ConvBNReLU(24, 48, 3)
        self.mixed3a = Mixed(48, 24, 24, 32, 8, 16, 16)             # 88 channels
        self.mixed3b = Mixed(88, 32, 32, 48, 8, 24, 24)             # 128
        self.pool3 = nn.MaxPool2d(2)
        self.mixed4a = Mixed(128, 48, 32, 64, 12, 24, 24)           # 160
        self.mixed4b = Mixed(160, 48, 48, 80, 16, 32, 32)           # 192
        self.pool4 = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(self.mixed4b.out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.conv1(x))
        x = self.mixed3b(self.mixed3a(self.conv2(x)))
        x = self.mixed4b(self.mixed4a(self.pool3(x)))
        return self.fc(self.dropout(torch.flatten(self.pool4(x), 1)))


MIXED_LAYERS = ["mixed3a", "mixed3b", "mixed4a", "mixed4b"]
# As the original's map: every mixed layer, plus the bottlenecks of all but the first.
DEFAULT_LAYERS = ["conv2"] + [
    name
    for i, mixed in enumerate(MIXED_LAYERS)
    for name in ([f"{mixed}.branch3x3_bottleneck", f"{mixed}.branch5x5_bottleneck"] if i else []) + [mixed]
]
