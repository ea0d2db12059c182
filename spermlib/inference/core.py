"""The inference core: the only code that runs a model forward outside training.

(Being grown into one preprocessing + precision policy for prediction, evaluation, TTA,
faithfulness, embeddings and the bench; see issue 11.)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from spermlib.data.preprocess import normalize
from spermlib.runtime import autocast


@torch.inference_mode()
def predict_proba(
    model: nn.Module, x_uint8: torch.Tensor, mean, std, device: torch.device, bf16: bool, channels_last: bool,
    batch_size: int = 128,
) -> np.ndarray:
    """Softmax probabilities for a uint8 batch, in chunks."""
    model.eval()
    out = []
    for i in range(0, len(x_uint8), batch_size):
        xb = normalize(x_uint8[i : i + batch_size].to(device), mean, std)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast(device, bf16):
            logits = model(xb)
        out.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))
