"""LeNet-style CNN and a small CIFAR ResNet, with feedback points after each conv block ('conv' tag)
and in the classifier head ('default' tag), so DFA can act on all points or on the head only."""
from __future__ import annotations

from torch import nn

from dfabench.engine import FeedbackPoint


class LeNet(nn.Module):
    def __init__(self, channels: int, size: int, classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), FeedbackPoint(tag="conv"),
            nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), FeedbackPoint(tag="conv"))
        flat = 16 * (size // 4) ** 2
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, 120), nn.ReLU(), FeedbackPoint(),
                                  nn.Linear(120, 84), nn.ReLU(), FeedbackPoint(), nn.Linear(84, classes))

    def forward(self, x):
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                  nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.point = FeedbackPoint(tag="conv")

    def forward(self, x):
        return self.point(self.act(self.body(x) + self.skip(x)))


class ResNet(nn.Module):
    """CIFAR ResNet (He et al. 2016): 6n+2 layers; n=3, width 16 is ResNet-20."""

    def __init__(self, channels: int, classes: int, n: int = 3, width: int = 16):
        super().__init__()
        layers = [nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                  FeedbackPoint(tag="conv")]
        cin = width
        for stage, mult in enumerate((1, 2, 4)):
            for i in range(n):
                layers.append(BasicBlock(cin, width * mult, 2 if stage and i == 0 else 1))
                cin = width * mult
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), FeedbackPoint(), nn.Linear(cin, classes))

    def forward(self, x):
        return self.head(self.features(x))
