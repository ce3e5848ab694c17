"""The one owner of the plugin's layer conventions: companion names, metadata keys, and the lookups.

Every widget finds an image's companions through these names, so an image named
"mdb001" has "mdb001 lesions" (the ground truth, from the reader or drawn), "mdb001
patch classes" (Classify's Labels), "mdb001 suspicion" (the screening heatmap),
"mdb001 detections" (Detect's boxes) and "mdb001 missed lesions" (Review).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import napari

LESIONS = "lesions"
PATCHES = "patch classes"
SUSPICION = "suspicion"
DETECTIONS = "detections"
MISSED = "missed lesions"
COMPANIONS = (LESIONS, PATCHES, SUSPICION, DETECTIONS, MISSED)

TRUTH_KIND, PATCHES_KIND, SUSPICION_KIND, DETECTIONS_KIND = "ground truth", "cnni-bcc", "suspicion", "detections"
KIND_OF = {LESIONS: None, PATCHES: PATCHES_KIND, SUSPICION: SUSPICION_KIND, DETECTIONS: DETECTIONS_KIND, MISSED: None}
"""The `kind` metadata of each companion this plugin makes (None: the user may have drawn it)."""


class Key:
    """The metadata keys of the layers this plugin reads and makes, so that no widget spells one itself."""

    KIND = "kind"  # what made a layer: one of the *_KIND above
    SOURCE = "source"  # the image file (image layers) or the image layer's name (companions)
    UNIT = "unit"  # "mm" when the image's scale is its pixel size
    REF, LABEL, TISSUE = "ref", "label", "tissue"  # a MIAS image's reference, verdict of truth and tissue
    REFS, LABELS, SIZES = "refs", "labels", "sizes"  # a stack's per-slice references, labels, (rows, cols)
    HEIGHTS = "heights"  # lesion Shapes: each reference's image height, for MIAS' bottom-left origin
    VERDICT, PROBABILITIES, SLICE, VERDICTS = "verdict", "probabilities", "slice", "verdicts"  # patches
    DETECTIONS, SLICES, THRESHOLD = "detections", "slices", "threshold"  # Detect's boxes, every one found
    MODEL = "model"  # which model found a detections layer's boxes: "idbll" or "screening"
    DELETED, SHOWN_IDS = "deleted", "shown_ids"  # boxes the researcher removed, and those now shown
    PATIENT, LATERALITY, VIEW = "patient", "laterality", "view"  # a DICOM film's PatientID, L/R, CC/MLO


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


def layer_named(viewer: napari.Viewer, name: str, kind: str | None = None):
    """The viewer's layer of that name (and, given `kind`, of that metadata kind), or None."""
    return next((layer for layer in viewer.layers if layer.name == name
                 and (kind is None or layer.metadata.get(Key.KIND) == kind)), None)


def companion_layer(viewer: napari.Viewer, image_name: str, kind: str, ours: bool = False):
    """An image's companion layer of one kind (LESIONS, PATCHES, ...), or None when it is not open.

    With `ours`, only a layer this plugin made counts (one to update in place); without, a
    layer the researcher made or renamed to that name counts too (one to read).
    """
    return layer_named(viewer, companion(image_name, kind), KIND_OF[kind] if ours else None)


def image_layers(viewer: napari.Viewer) -> list:
    """The viewer's image layers, not counting the suspicion heatmaps this plugin adds."""
    import napari

    return [layer for layer in viewer.layers
            if isinstance(layer, napari.layers.Image) and layer.metadata.get(Key.KIND) != SUSPICION_KIND]


def pixel_spacing(layer) -> tuple[float, float] | None:
    """The layer's pixel size in mm if its metadata says the scale is in mm."""
    if layer.metadata.get(Key.UNIT) == "mm":
        return float(layer.scale[-2]), float(layer.scale[-1])
    return None


def slice_refs(layer) -> list[str]:
    """The MIAS references of a stack's slices, in order ([] for an image or an unnamed stack)."""
    return [str(ref) for ref in layer.metadata.get(Key.REFS) or []]
