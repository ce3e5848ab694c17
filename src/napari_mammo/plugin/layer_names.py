"""The one owner of how this plugin names its layers: an image's truth, patches, heatmap, boxes and misses.

Every widget finds an image's companions through these names, so an image named
"mdb001" has "mdb001 lesions" (the ground truth, from the reader or drawn), "mdb001
CNNI-BCC patches" (Classify's Labels), "mdb001 suspicion" (the screening heatmap),
"mdb001 IDBLL detections" (Detect's boxes) and "mdb001 missed lesions" (Review).
"""

from __future__ import annotations

LESIONS = "lesions"
PATCHES = "CNNI-BCC patches"
SUSPICION = "suspicion"
DETECTIONS = "IDBLL detections"
MISSED = "missed lesions"
COMPANIONS = (LESIONS, PATCHES, SUSPICION, DETECTIONS, MISSED)


def companion(image_name: str, kind: str) -> str:
    """The name of an image's companion layer of one kind (one of COMPANIONS)."""
    if kind not in COMPANIONS:
        raise ValueError(f"unknown companion layer {kind!r}")
    return f"{image_name} {kind}"


def image_of(layer_name: str) -> str:
    """The image name that a companion layer's name belongs to (the name itself otherwise)."""
    for kind in sorted(COMPANIONS, key=len, reverse=True):  # "missed lesions" before "lesions"
        if layer_name.endswith(f" {kind}"):
            return layer_name.removesuffix(f" {kind}")
    return layer_name
