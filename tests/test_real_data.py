"""Checks on the real mini-MIAS folder (NAPARI_MAMMO_MIAS); skipped without it."""

import numpy as np
import pytest

from napari_mammo import MammoInputError, read_folder, read_image


def test_every_listed_image_reads(mias_folder):
    records = read_folder(mias_folder)
    assert len(records) >= 100
    for record in records:
        image = read_image(record.path)
        assert image.pixels.shape == (1024, 1024) and image.pixels.dtype == np.uint8
        for lesion in record.lesions:
            if lesion.located:
                assert 0 <= lesion.row <= 1024 and 0 <= lesion.col <= 1024


def test_known_rows(mias_folder):
    records = {r.ref: r for r in read_folder(mias_folder)}
    if "mdb001" in records:
        lesion = records["mdb001"].lesions[0]
        assert (lesion.row, lesion.col, lesion.radius) == (1024 - 425, 535, 197)
    if "mdb005" in records:
        assert len(records["mdb005"].lesions) == 2


def test_truncated_copy_names_file(mias_folder, tmp_path):
    source = next(mias_folder.glob("mdb*.pgm"))
    copy = tmp_path / source.name
    copy.write_bytes(source.read_bytes()[:-100])
    with pytest.raises(MammoInputError, match=f"{source.name}: truncated"):
        read_image(copy)
