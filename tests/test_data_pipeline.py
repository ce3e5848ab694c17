import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_mammo import Lesion, Mammogram, read_folder
from napari_mammo.data.augment import (
    ALL_TRANSFORMS,
    SEED_TRANSFORMS,
    apply_boxes,
    apply_image,
    apply_points,
    apply_record,
    transformed_shape,
)
from napari_mammo.data.patches import breast_mask, extract, pad_to_multiple, patch_labels, select_patches
from napari_mammo.data.splits import split_by_woman, standard_split
from napari_mammo.io.synthetic import synthetic_mammogram


def test_seed_sampling_gives_32_middle_patches():
    image = np.zeros((1024, 1024), np.uint8)
    middle = select_patches(image, "middle")
    assert len(middle) == 32
    assert sorted({p.grid_col for p in middle}) == [2, 3, 4, 5]
    assert len(select_patches(image, "all")) == 64


def test_patches_are_the_exact_pixels():
    image = np.arange(256 * 256, dtype=np.int64).reshape(256, 256)
    patches = select_patches(image, "all")
    stack = extract(image, patches)
    for patch, pixels in zip(patches, stack, strict=True):
        np.testing.assert_array_equal(pixels, image[patch.row : patch.row + 128, patch.col : patch.col + 128])


def test_other_sizes_are_padded_not_cropped():
    image = np.ones((300, 200), np.uint8)
    padded = pad_to_multiple(image)
    assert padded.shape == (384, 256)
    np.testing.assert_array_equal(padded[:300, :200], image)
    assert padded[300:].sum() == 0 and padded[:, 200:].sum() == 0
    assert len(select_patches(image, "all")) == 3 * 2


def test_breast_selection_keeps_breast_patches():
    pixels, _ = synthetic_mammogram(seed=3, size=1024, label="normal", ref="mdb002")
    mask = breast_mask(pixels)
    assert mask[512, 20] and not mask[512, 1010]  # even number: left breast, chest wall at the left
    patches = select_patches(pixels, "breast")
    assert 8 <= len(patches) < 64
    assert all(mask[p.row : p.row + 128, p.col : p.col + 128].mean() >= 0.5 for p in patches)


def test_lesion_aware_and_image_labels():
    record = Mammogram("mdb001", "G", (Lesion("CIRC", "B", row=200, col=200, radius=30),
                                       Lesion("SPIC", "M", row=600, col=600, radius=10)))
    patches = select_patches(np.zeros((1024, 1024)), "all")
    labels = patch_labels(record, patches, "lesion")
    by_cell = {(p.grid_row, p.grid_col): int(v) for p, v in zip(patches, labels, strict=True)}
    assert by_cell[(1, 1)] == 1 and by_cell[(4, 4)] == 2
    assert sum(labels == 1) == 1 and sum(labels == 2) == 1 and sum(labels == 0) == 62
    assert set(patch_labels(record, patches, "image")) == {2}
    unlocated = Mammogram("mdb233", "G", (Lesion("CALC", "M"),))
    assert set(patch_labels(unlocated, patches, "lesion")) == {2}


def test_lesion_touching_patch_edge_counts():
    record = Mammogram("mdb001", "G", (Lesion("CALC", "B", row=130, col=60, radius=3),))
    patches = select_patches(np.zeros((256, 256)), "all")
    labels = dict(zip([(p.grid_row, p.grid_col) for p in patches], patch_labels(record, patches), strict=True))
    assert labels[(1, 0)] == 1 and labels[(0, 0)] == 1 and labels[(1, 1)] == 0


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(ALL_TRANSFORMS),
    st.integers(4, 40), st.integers(4, 40),
    st.data(),
)
def test_augmentation_moves_points_with_pixels(transform, height, width, data):
    row = data.draw(st.integers(0, height - 1))
    col = data.draw(st.integers(0, width - 1))
    image = np.zeros((height, width), np.uint8)
    image[row, col] = 255
    moved = apply_image(image, transform)
    assert moved.shape == transformed_shape((height, width), transform)
    (new_row, new_col), = apply_points(np.array([[row, col]]), (height, width), transform)
    assert moved[int(new_row), int(new_col)] == 255
    box = apply_boxes(np.array([[row, col, row, col]]), (height, width), transform)[0]
    assert (box[0], box[1]) == (new_row, new_col) == (box[2], box[3])


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(SEED_TRANSFORMS), st.integers(10, 246), st.integers(10, 246), st.integers(2, 9))
def test_patch_labels_commute_with_augmentation(transform, row, col, radius):
    record = Mammogram("mdb001", "F", (Lesion("CIRC", "M", float(row), float(col), float(radius)),))
    image = np.zeros((256, 256))
    patches = select_patches(image, "all")
    label_grid = np.zeros((2, 2), int)
    for p, v in zip(patches, patch_labels(record, patches), strict=True):
        label_grid[p.grid_row, p.grid_col] = v
    moved = apply_record(record, (256, 256), transform)
    moved_grid = np.zeros((2, 2), int)
    for p, v in zip(patches, patch_labels(moved, patches), strict=True):
        moved_grid[p.grid_row, p.grid_col] = v
    np.testing.assert_array_equal(moved_grid, apply_image(label_grid, transform))


def test_boxes_move_with_the_lesion():
    record = Mammogram("mdb001", "F", (Lesion("CIRC", "B", 100.0, 300.0, 20.0),))
    for transform in ALL_TRANSFORMS:
        moved = apply_record(record, (512, 1024), transform).lesions[0]
        box = apply_boxes(np.array([record.lesions[0].box()]), (512, 1024), transform)[0]
        np.testing.assert_allclose(box, moved.box())


def test_split_keeps_pairs_together_is_stratified_and_seeded(synthetic_folder):
    records = [Mammogram(f"mdb{i:03d}", "F", (Lesion("CIRC", "BM"[i % 2]),) if i % 3 else ())
               for i in range(1, 201)]
    parts = standard_split(records, seed=5)
    assert sum(len(p) for p in parts.values()) == 200
    for name, part in parts.items():
        women = {r.woman for r in part}
        for other_name, other in parts.items():
            if other_name != name:
                assert women.isdisjoint(r.woman for r in other)
        assert len(part) == 2 * len(women)
    assert 0.15 < len(parts["test"]) / 200 < 0.25
    assert standard_split(records, seed=5) == parts
    assert standard_split(records, seed=6) != parts
    with pytest.raises(ValueError):
        split_by_woman(records, {"a": 0.8, "b": 0.5})


def test_synthetic_folder_reads_back(synthetic_folder):
    records = read_folder(synthetic_folder)
    assert [r.label for r in records[::2]] == ["normal", "benign", "malignant"]
    for record in records:
        assert record.path.is_file()
        for lesion in record.lesions:
            assert lesion.located and 0 <= lesion.row < 256 and 0 <= lesion.col < 256


def test_lesion_crops_hold_the_lesion_centre():
    from napari_mammo.data.patches import lesion_crops

    image = np.zeros((300, 260), np.float32)
    image[200, 30] = 1.0  # the lesion centre, near the left edge
    record = Mammogram("mdb001", "F", (Lesion("CIRC", "M", 200, 30, 12), Lesion("CALC", "B", 50, 200, 5),
                                       Lesion("CALC", "B")))  # the last one has no location
    crops, labels = lesion_crops(record, image, 8, np.random.default_rng(0))
    assert crops.shape == (16, 128, 128) and list(labels) == [2] * 8 + [1] * 8
    for crop in crops[:8]:
        (row,), (col,) = np.nonzero(crop)
        assert 64 - 32 <= row <= 64 + 32 and col == 30  # the crop is clamped at the image's left edge
    none, no_labels = lesion_crops(Mammogram("mdb002", "F"), image, 8, np.random.default_rng(0))
    assert none.shape == (0, 128, 128) and no_labels.shape == (0,)
