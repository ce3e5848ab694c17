"""Exact large-kernel depthwise convolution with Keras "same" padding.

The poster's depthwise kernels (32×32 and 64×64) are as large as the feature maps. Plain
`nn.Conv2d` in NCHW with its own padding falls back to a slow kernel on the CPU (measured by
`napari-mammo bench`). The fast form computes the same cross-correlation:

- forward: explicit padding, then a grouped convolution in channels-last memory format,
  which oneDNN runs at close to the CPU's peak;
- backward (a custom autograd function): the input gradient is the same kind of
  convolution with the flipped kernel, and the weight gradient is a cross-correlation
  summed over the batch, computed with real FFTs of size ≥ H + k − 1 so no circular
  wrap-around reaches the kept taps.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CHANNELS_LAST = torch.channels_last


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Keras/TensorFlow "same" padding (before, after): the odd pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def fft_size(n: int) -> int:
    """Smallest size ≥ n whose only prime factors are 2, 3 and 5 (fast for the FFT)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _pad_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Pad the last two axes as Keras "same" does."""
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    return F.pad(x, (left, right, top, bottom))


def _grouped(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int = 1) -> torch.Tensor:
    """Valid depthwise cross-correlation; channels-last for float32, where oneDNN is fast."""
    if x.dtype == torch.float32 and x.device.type == "cpu":
        x = x.contiguous(memory_format=CHANNELS_LAST)
        weight = weight.contiguous(memory_format=CHANNELS_LAST)
    return F.conv2d(x, weight, bias, stride=stride, groups=x.shape[1])


def weight_grad_fft(xp: torch.Tensor, grad: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """Σ over the batch of the valid cross-correlation of padded input and output gradient."""
    size = (fft_size(xp.shape[-2]), fft_size(xp.shape[-1]))
    spectrum = torch.fft.rfft2(xp, s=size) * torch.fft.rfft2(grad, s=size).conj()
    full = torch.fft.irfft2(spectrum.sum(0), s=size)
    return full[:, : kernel[0], : kernel[1]].unsqueeze(1)


class _SameDepthwise(torch.autograd.Function):
    """Stride-1 "same" depthwise convolution with fast forward and backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Pad, then convolve in channels-last."""
        xp = _pad_same(x, weight.shape[-1], 1)
        ctx.save_for_backward(xp, weight)
        return _grouped(xp, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        """Input gradient by the flipped kernel, weight gradient by FFT, bias gradient by a sum."""
        xp, weight = ctx.saved_tensors
        k_h, k_w = weight.shape[-2:]
        top, bottom = same_padding(grad.shape[-2], k_h, 1)
        left, right = same_padding(grad.shape[-1], k_w, 1)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            padded = F.pad(grad, (right, left, bottom, top))
            grad_x = _grouped(padded, weight.flip(-2, -1), None)
        if ctx.needs_input_grad[1]:
            grad_w = weight_grad_fft(xp, grad, (k_h, k_w)).to(weight.dtype)
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b


class SameDepthwiseConv2d(nn.Module):
    """Keras DepthwiseConv2D(kernel, strides, padding="same"), depth multiplier 1.

    `fast=False` is the plain reference: `nn.Conv2d`'s own padding in NCHW (Keras' odd
    extra pixel is padded explicitly only where "same" is asymmetric).
    """

    def __init__(self, channels: int, kernel: int, stride: int = 1, fast: bool = True) -> None:
        super().__init__()
        self.kernel, self.stride, self.fast = kernel, stride, fast
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel, kernel))
        self.bias = nn.Parameter(torch.empty(channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.uniform_(self.bias, -1 / kernel, 1 / kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the convolution."""
        if self.fast and self.stride == 1:
            return _SameDepthwise.apply(x, self.weight, self.bias)
        if self.fast:
            return _grouped(_pad_same(x, self.kernel, self.stride), self.weight, self.bias, self.stride).contiguous()
        return plain_same_conv(x, self.weight, self.bias, self.stride, groups=x.shape[1])

    def extra_repr(self) -> str:
        """Shown by print(model)."""
        return f"{self.weight.shape[0]}, kernel={self.kernel}, stride={self.stride}, fast={self.fast}"


def plain_same_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
                    groups: int = 1) -> torch.Tensor:
    """Keras "same" convolution the plain way: symmetric padding inside conv2d, extra pixel by F.pad."""
    k = weight.shape[-1]
    top, bottom = same_padding(x.shape[-2], k, stride)
    left, right = same_padding(x.shape[-1], k, stride)
    if (top, left) != (bottom, right):
        x = F.pad(x, (0, right - left, 0, bottom - top))
    return F.conv2d(x, weight, bias, stride=stride, padding=(top, left), groups=groups)


def transposed_depthwise_fft(grad: torch.Tensor, weight: torch.Tensor, stride: int, size: int) -> torch.Tensor:
    """Adjoint of the "same" strided depthwise convolution of a `size`×`size` map, by FFT.

    `grad` (B, C, h, w) lies on the convolution's output grid; the result (B, C, size, size)
    is what `conv_transpose2d` gives, computed as a full convolution of the zero-interleaved
    `grad` with the kernel, cropped to the input grid. Differentiable through torch.fft.
    """
    k = weight.shape[-1]
    top, _ = same_padding(size, k, stride)
    left, _ = same_padding(size, k, stride)
    b, c, h, w = grad.shape
    spread = grad.new_zeros(b, c, (h - 1) * stride + 1, (w - 1) * stride + 1)
    spread[..., ::stride, ::stride] = grad
    length = (fft_size(spread.shape[-2] + k - 1), fft_size(spread.shape[-1] + k - 1))
    full = torch.fft.irfft2(torch.fft.rfft2(spread, s=length) * torch.fft.rfft2(weight[:, 0], s=length), s=length)
    return full[..., top : top + size, left : left + size]
