"""EfficientNet (any timm backbone) with a new head, optionally with CBAM on the final feature map.

Placement of CBAM: after the backbone's last activation (``conv_head → bn2``), before global pooling,
as in the paper. Channel attention re-weights the 1280 feature channels; spatial attention then
re-weights positions, and that spatial gate is the map the app shows (``spatial_attention``).
"""

from __future__ import annotations

import timm
import torch
from timm.layers import ClassifierHead
from timm.layers.cbam import CbamModule
from torch import nn


class EfficientNetClassifier(nn.Module):
    has_backbone = True
    DOMAIN_TAPS = 4  # early feature maps ``forward_features_and_taps`` returns: the stem and blocks 0-2

    def __init__(self, backbone: str, num_classes: int, cbam: bool = False, drop_rate: float = 0.2):
        super().__init__()
        self.num_classes = num_classes
        self.backbone_name = backbone
        # No classifier, no pooling: forward_features yields the final feature map.
        self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0, global_pool="")
        self.num_features = self.backbone.num_features
        self.attention: nn.Module = CbamModule(self.num_features) if cbam else nn.Identity()
        self.head = ClassifierHead(self.num_features, num_classes, pool_type="avg", drop_rate=drop_rate)

    def load_backbone_state(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load ImageNet weights of the full timm model; its classifier is dropped."""
        state = {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}
        self.backbone.load_state_dict(state, strict=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(self.backbone.forward_features(x))

    def forward_features_and_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``forward_features(x)`` and the feature maps of the early stages (the stem and the first
        ``DOMAIN_TAPS - 1`` blocks), from one pass (timm's ``forward_intermediates``: the same operations,
        no hook). Out-of-domain detection summarises those maps: stain, contrast and magnification show there
        before the later blocks abstract them away."""
        final, taps = self.backbone.forward_intermediates(x, indices=list(range(self.DOMAIN_TAPS)), extra_blocks=True)
        return self.attention(final), taps

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def get_classifier(self) -> nn.Module:
        """The final linear layer (timm): ``get_classifier()(forward_head(f, pre_logits=True))`` are the logits."""
        return self.head.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def has_cbam(self) -> bool:
        return isinstance(self.attention, CbamModule)

    @property
    def cam_target_layer(self) -> nn.Module:
        # With CBAM, explain the attended features (what the head actually pools).
        return self.attention if self.has_cbam else self.backbone.bn2

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def forward_features_and_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(forward_features(x), CBAM spatial gate (B, 1, h, w) in [0, 1])`` from one backbone pass.

        Computed functionally from CBAM's own layers (no hooks, no stored state), so concurrent
        callers never see each other's maps.
        """
        if not self.has_cbam:
            raise ValueError("this model has no CBAM attention")
        feats = self.attention.channel(self.backbone.forward_features(x))
        spatial = self.attention.spatial
        pooled = torch.cat([feats.mean(dim=1, keepdim=True), feats.amax(dim=1, keepdim=True)], dim=1)
        gate = spatial.gate(spatial.conv(pooled))
        return feats * gate, gate

    @torch.no_grad()
    def spatial_attention(self, x: torch.Tensor) -> torch.Tensor:
        """CBAM spatial gate for ``x``: ``(B, 1, h, w)`` in [0, 1] on the final feature grid."""
        return self.forward_features_and_attention(x)[1]
