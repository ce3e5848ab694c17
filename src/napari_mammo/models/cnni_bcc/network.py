"""CNNI-BCC: the poster's patch classifier, layer for layer (309,731 parameters).

Input: one 128×128 grey patch; output: logits over (normal, benign, malignant).

The poster shows no activations. Our choice: ReLU after conv2d_1, depthwise_conv2d_1 and
conv2d_2; depthwise_conv2d_2 is linear (Keras' default for DepthwiseConv2D), so the block
depthwise_conv2d_2 → average_pooling2d_1 → flatten_1 → dense_1 is one linear map of
conv2d_2's output. The fast model evaluates that map directly: its weight is the adjoint of
the pooled, strided depthwise convolution applied to the dense weights (a transposed
convolution computed once per batch by FFT), which gives exactly the same logits as running the layers one by
one. Flatten follows Keras' channels-last order, so a Keras model's weights would fit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_mammo.models.cnni_bcc.depthwise import (
    CHANNELS_LAST,
    SameDepthwiseConv2d,
    plain_same_conv,
    transposed_depthwise_fft,
)

PATCH_SIZE = 128


class CNNIBCC(nn.Module):
    """The poster's network; `fast=False` gives the plain NCHW `nn.Conv2d` reference."""

    def __init__(self, fast: bool = True, classes: int = 3) -> None:
        super().__init__()
        self.fast = fast
        self.conv1 = nn.Conv2d(1, 32, 3, stride=2)
        self.depthwise1 = SameDepthwiseConv2d(32, 32, stride=1, fast=fast)
        self.conv2 = nn.Conv2d(32, 64, 1)
        self.depthwise2 = SameDepthwiseConv2d(64, 64, stride=2, fast=fast)
        self.pool = nn.AvgPool2d(4)
        self.dense = nn.Linear(8 * 8 * 64, classes)

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        """conv2d_1 → depthwise_conv2d_1 → conv2d_2, each followed by ReLU."""
        if x.shape[-2:] != (PATCH_SIZE, PATCH_SIZE) or x.shape[1] != 1:
            raise ValueError(f"CNNI-BCC takes (N, 1, 128, 128) patches, got {tuple(x.shape)}")
        h = F.relu(plain_same_conv(x, self.conv1.weight, self.conv1.bias, stride=2), inplace=True)
        if self.fast and h.dtype == torch.float32:
            h = h.contiguous(memory_format=CHANNELS_LAST)  # oneDNN keeps it through the next layers
        h = F.relu(self.depthwise1(h), inplace=True)
        return F.relu(self.conv2(h), inplace=True)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every layer's output by the poster's layer names (NCHW), computed layer by layer."""
        out: dict[str, torch.Tensor] = {}
        if x.shape[-2:] != (PATCH_SIZE, PATCH_SIZE) or x.shape[1] != 1:
            raise ValueError(f"CNNI-BCC takes (N, 1, 128, 128) patches, got {tuple(x.shape)}")
        out["conv2d_1"] = h = F.relu(plain_same_conv(x, self.conv1.weight, self.conv1.bias, stride=2))
        out["depthwise_conv2d_1"] = h = F.relu(self.depthwise1(h))
        out["conv2d_2"] = h = F.relu(self.conv2(h))
        out["depthwise_conv2d_2"] = h = self.depthwise2(h)
        out["average_pooling2d_1"] = h = self.pool(h)
        out["flatten_1"] = h = h.permute(0, 2, 3, 1).flatten(1)
        out["dense_1"] = self.dense(h)
        return out

    def linear_head(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight (classes, 64, 64, 64) and bias of the linear map from conv2d_2's output to the logits."""
        classes = self.dense.out_features
        dense = self.dense.weight.view(classes, 8, 8, 64).permute(0, 3, 1, 2)  # Keras flatten order (h, w, c)
        pooled = dense.repeat_interleave(4, dim=-2).repeat_interleave(4, dim=-1) / 16  # adjoint of the 4×4 mean
        weight = transposed_depthwise_fft(pooled, self.depthwise2.weight, stride=2, size=64)
        bias = self.dense.bias + pooled.sum((-2, -1)) @ self.depthwise2.bias
        return weight, bias

    def _head_for_inference(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The linear head, cached until a parameter it depends on changes (their version counters)."""
        params = (self.depthwise2.weight, self.depthwise2.bias, self.dense.weight, self.dense.bias)
        key = tuple((id(p), p._version, p.device) for p in params)
        cached = getattr(self, "_head_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, self.linear_head())
            self._head_cache = cached
        return cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch of (N, 1, 128, 128) patches."""
        if not self.fast:
            return self.features(x)["dense_1"]
        h = self._trunk(x)
        weight, bias = self._head_for_inference() if not torch.is_grad_enabled() else self.linear_head()
        # channels-last order: (h, w, c) is contiguous in memory, so flattening copies nothing
        return h.permute(0, 2, 3, 1).flatten(1) @ weight.permute(0, 2, 3, 1).flatten(1).T + bias
