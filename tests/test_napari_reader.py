"""The reader and sample data as napari calls them, in a real viewer."""

import npe2
import numpy as np
import pytest

from napari_mammo import read_image
from napari_mammo.plugin.reader import get_reader


def test_npe2_reads_pgm_with_lesions(synthetic_folder):
    npe2.PluginManager.instance().discover()
    path = synthetic_folder / "mdb003.pgm"  # benign
    layers = npe2.read([str(path)], stack=False, plugin_name="napari-mammo")
    (pixels, image_kwargs, image_type), (shapes, shape_kwargs, shape_type) = layers
    assert image_type == "image" and shape_type == "shapes"
    np.testing.assert_array_equal(pixels, read_image(path).pixels)
    assert image_kwargs["scale"] == (0.2, 0.2) and image_kwargs["metadata"]["unit"] == "mm"
    assert shape_kwargs["scale"] == (0.2, 0.2) and shape_kwargs["shape_type"] == "ellipse"
    assert set(shape_kwargs["features"]) >= {"class", "severity", "tissue"}


def test_reader_declines_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path)) is None  # a folder without Info.txt


def test_viewer_shows_exact_pixels_and_circles_where_info_puts_them(make_napari_viewer, synthetic_folder):
    viewer = make_napari_viewer()
    path = synthetic_folder / "mdb005.pgm"
    layers = viewer.open(str(path), plugin="napari-mammo")
    image, shapes = layers
    np.testing.assert_array_equal(image.data, read_image(path).pixels)
    info = (synthetic_folder / "Info.txt").read_text().split()
    row_index = info.index("mdb005")
    x, y, radius = (float(v) for v in info[row_index + 4 : row_index + 7])
    corners = shapes.data[0]
    centre = corners.mean(axis=0)
    np.testing.assert_allclose(centre, [256 - y, x])
    np.testing.assert_allclose(np.ptp(corners, axis=0), [2 * radius, 2 * radius])
    np.testing.assert_allclose(shapes.scale, image.scale)
    assert shapes.features["severity"][0] == "M"


def test_folder_opens_as_stack_with_lesions_on_their_slices(make_napari_viewer, synthetic_folder):
    viewer = make_napari_viewer()
    image, shapes = viewer.open(str(synthetic_folder), plugin="napari-mammo")
    assert image.data.shape == (6, 256, 256)
    slices = {int(s[0, 0]) for s in shapes.data}
    assert slices == {i for i, ref in enumerate(image.metadata["refs"]) if ref in set(shapes.features["ref"])}


def test_bad_file_raises_named_error(make_napari_viewer, tmp_path):
    bad = tmp_path / "mdb001.pgm"
    bad.write_bytes(b"P5\n1024 1024\n255\n")
    viewer = make_napari_viewer()
    with pytest.raises(Exception, match="mdb001.pgm: truncated"):
        viewer.open(str(bad), plugin="napari-mammo")


def test_sample_data_in_file_menu(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-mammo", "synthetic")
    assert [layer.name for layer in layers] == ["synthetic mammogram", "synthetic mammogram lesions"]
    assert layers[0].data.shape == (1024, 1024)


def test_screenshot_shows_circle_on_the_lesion(make_napari_viewer, synthetic_folder):
    """In a shown viewer, the drawn circle's pixels lie on the lesion, not elsewhere."""
    viewer = make_napari_viewer(show=True)
    path = synthetic_folder / "mdb005.pgm"
    image, shapes = viewer.open(str(path), plugin="napari-mammo")
    shapes.selected_data = set(range(1, len(shapes.data)))
    shapes.remove_selected()
    shapes.edge_color = ["#00ff00"]
    shapes.text.visible = False
    shapes.refresh()
    image.visible = False
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    green = (shot[..., 1] > 100) & (shot[..., 0] < 60) & (shot[..., 2] < 60)
    assert green.any()
    ys, xs = np.nonzero(green)
    # the drawn ring's centre, in canvas pixels, maps back to the lesion centre in data pixels
    world = np.array([ys.mean(), xs.mean()])
    canvas_centre = np.array(shot.shape[:2]) / 2
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari 0.9 moved it
    zoom = camera.zoom
    data = (np.array(camera.center[-2:]) + (world - canvas_centre) / zoom) / np.array(image.scale)
    lesion = shapes.data[0].mean(axis=0)
    assert np.abs(data - lesion).max() < 4


def test_writer_saves_lesions_as_info_txt_and_csv(make_napari_viewer, synthetic_folder, tmp_path):
    import shutil

    from napari_mammo.io.mias import read_csv, read_folder

    viewer = make_napari_viewer()
    _, shapes = viewer.open(str(synthetic_folder / "mdb005.pgm"), plugin="napari-mammo")
    original = {r.ref: r for r in read_folder(synthetic_folder)}["mdb005"]
    out = tmp_path / "saved"
    out.mkdir()
    shutil.copy(synthetic_folder / "mdb005.pgm", out / "mdb005.pgm")
    shapes.save(str(out / "Info.txt"), plugin="napari-mammo")
    shapes.save(str(tmp_path / "lesions.csv"), plugin="napari-mammo")
    (saved,) = read_folder(out)  # Y measured from the bottom of the 256-pixel image
    assert saved.ref == "mdb005" and saved.tissue == original.tissue
    assert [(les.abnormality, les.severity, les.row, les.col, les.radius) for les in saved.lesions] == [
        (les.abnormality, les.severity, les.row, les.col, les.radius) for les in original.lesions]
    (from_csv,) = read_csv(tmp_path / "lesions.csv")
    assert from_csv.lesions == saved.lesions
    # a moved circle is saved where the researcher put it
    shapes.data = [shapes.data[0] + 10, *shapes.data[1:]]
    shapes.save(str(out / "Info.txt"), plugin="napari-mammo")
    (moved,) = read_folder(out)
    assert (moved.lesions[0].row, moved.lesions[0].col) == (original.lesions[0].row + 10,
                                                             original.lesions[0].col + 10)


def test_manifest_is_valid_and_contributes_everything():
    manifest = npe2.PluginManifest.from_distribution("napari-mammo")
    contributions = manifest.contributions
    assert {w.display_name for w in contributions.widgets} == {"Classify (screening, CNNI-BCC)",
                                                               "Detect lesions (screening, IDBLL)", "Review", "Train"}
    assert contributions.readers and contributions.writers and contributions.sample_data
    for command in contributions.commands:
        module, _, attribute = command.python_name.partition(":")
        assert hasattr(__import__(module, fromlist=[attribute]), attribute), command.python_name


def test_writer_and_annotations_read_shapes_alike(tmp_path):
    from napari_mammo.io.mias import read_info
    from napari_mammo.plugin.layers import shape_lesion
    from napari_mammo.plugin.writer import write_lesions

    square = np.array([[10, 20], [10, 40], [30, 40], [30, 20]], float)
    assert shape_lesion(square, "CIRC", "malignant") == shape_lesion(square, "CIRC", "M")
    lesion = shape_lesion(square, "NORM", "x")
    assert (lesion.abnormality, lesion.severity, lesion.row, lesion.col, lesion.radius) == ("MISC", "B", 20, 30, 10)
    assert shape_lesion(np.array([[5, 5]] * 4, float), "CALC", "B").radius == 1.0  # a point still has a circle
    # the npe2 writer uses the same rule: 'malignant' is saved as M
    write_lesions(str(tmp_path / "Info.txt"), [square],
                  {"name": "mdb001 lesions", "features": {"class": ["CIRC"], "severity": ["malignant"]}})
    (record,) = read_info(tmp_path / "Info.txt")
    assert record.lesions[0].severity == "M" and record.lesions[0].radius == 10
