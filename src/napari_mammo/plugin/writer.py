"""npe2 writer: a Shapes layer of lesion circles saved as a MIAS-style Info.txt or as CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_mammo.io.atomic import atomic_write_bytes
from napari_mammo.io.mias import MIAS_SIZE, format_csv, format_info
from napari_mammo.plugin.companions import Key, image_of
from napari_mammo.plugin.layers import feature_text, shape_lesion
from napari_mammo.records import Mammogram, is_mias_ref


def layer_records(data: list, attributes: dict) -> tuple[list[Mammogram], dict[str, int]]:
    """Group a Shapes layer's circles into records by reference, with each image's height."""
    features = attributes.get("features")
    metadata = attributes.get("metadata") or {}
    refs = metadata.get(Key.REFS) or []
    image_name = image_of(str(attributes.get("name", "")))
    default_ref = image_name if is_mias_ref(image_name) else "img001"
    records: dict[str, Mammogram] = {}
    tissues: dict[str, str] = {}
    for index, vertices in enumerate(data):
        vertices = np.asarray(vertices, float)
        ref = feature_text(features, "ref", index, "")
        if not ref and vertices.shape[1] > 2 and refs:
            ref = refs[int(round(vertices[0, 0]))]
        ref = ref or default_ref
        lesion = shape_lesion(vertices, feature_text(features, "class", index, "MISC"),
                              feature_text(features, "severity", index, "B"))
        tissues.setdefault(ref, feature_text(features, "tissue", index, "F"))
        record = records.setdefault(ref, Mammogram(ref, tissues[ref]))
        records[ref] = record.with_lesions((*record.lesions, lesion))
    heights = {ref: int(h) for ref, h in (metadata.get(Key.HEIGHTS) or {}).items()}
    return list(records.values()), {ref: heights.get(ref, MIAS_SIZE) for ref in records}


def write_lesions(path: str, data: list, attributes: dict) -> list[str]:
    """Write the layer's lesions as Info.txt (a .txt path) or CSV (a .csv path), atomically."""
    target = Path(path)
    records, heights = layer_records(data, attributes)
    if target.suffix.lower() == ".csv":  # any text: the csv module quotes commas and line breaks
        data = format_csv(records, heights).encode("utf-8")
    else:  # Info.txt: every field checked to be one Latin-1 word
        data = format_info(records, heights, header="Lesions saved by napari-mammo (origin at the bottom-left).")
        data = data.encode("latin-1")
    atomic_write_bytes(target, data)
    return [str(target)]
