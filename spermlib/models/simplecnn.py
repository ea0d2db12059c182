"""The paper's small CNN baseline: four conv-BN-ReLU blocks with max-pooling, then a linear head."""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class SimpleCNN(nn.Module):
    """Input any size ≥ 16 px; output ``num_classes`` logits. Follows the timm model contract."""

    has_backbone = False
    DOMAIN_TAPS = 2  # early feature maps ``forward_features_and_taps`` returns: the first two blocks

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (32, 64, 128, 256), drop_rate: float = 0.3):
        super().__init__()
        self.num_classes = num_classes
        chans = (3, *widths)
        self.features = nn.Sequential(*[_block(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.num_features = widths[-1]
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_features_and_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``forward_features(x)`` and the maps of the first ``DOMAIN_TAPS`` blocks, from one pass."""
        taps = []
        for i, block in enumerate(self.features):
            x = block(x)
            if i < self.DOMAIN_TAPS:
                taps.append(x)
        return x, taps

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # As in timm's ClassifierHead: pre-logits are pooled features after dropout (a no-op in eval),
        # so ``get_classifier()(forward_head(x, pre_logits=True))`` is ``forward_head(x)``.
        x = self.drop(x.mean((2, 3)))
        return x if pre_logits else self.classifier(x)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def cam_target_layer(self) -> nn.Module:
        # Last conv block: the finest map that still carries class evidence.
        return self.features[-1]

    def backbone_parameters(self) -> list[nn.Parameter]:
        return []
