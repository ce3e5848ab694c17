"""The tuned cell map: fine-tuning on stage-4 crops, saving and loading, and the screener's boxes from it."""

import json

import numpy as np
import pytest

from napari_mammo import MammoInputError, read_folder
from napari_mammo.evaluation.crossval import load_screening_features
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.models.screening import ScreeningConfig, cell_boxes, cell_labels
from napari_mammo.models.tuned_cells import fine_tune_cells, tuned_scores


def lesion_cell_auc(net, records, cells, stage4) -> float:
    """AUC of the tuned map's scores, lesion cells against the other breast cells."""
    truth, scores = [], []
    for record in records:
        found = cells[record.ref]
        labels = cell_labels(record, found.breast.shape, found.stride)
        values = tuned_scores(net, stage4[record.ref].features)
        truth.extend(labels[found.breast])
        scores.extend(values[found.breast])
    return roc_auc(np.array(truth) > 0, np.array(scores))


def test_fine_tuning_learns_where_the_lesions_are(synthetic_folder):
    records = read_folder(synthetic_folder)
    config = ScreeningConfig(tune_epochs=1, tune_steps=40, tune_batch=8)
    cells, stage4 = load_screening_features(records, config)
    before = lesion_cell_auc(fine_tune_cells(records, stage4, cells, ScreeningConfig(tune_epochs=1, tune_steps=0)),
                             records, cells, stage4)
    after = lesion_cell_auc(fine_tune_cells(records, stage4, cells, config), records, cells, stage4)
    assert after > 0.9 and after > before + 0.1, (before, after)


@pytest.mark.parametrize("width", [256, 250])
def test_a_mirror_image_is_its_film_mirrored_cell_for_cell(width):
    from napari_mammo import Lesion, Mammogram
    from napari_mammo.models.screening import CellFeatures
    from napari_mammo.models.tuned_cells import is_mirror, mirror_pixels, mirrored_record

    pixels = np.arange(200 * width, dtype=np.float32).reshape(200, width)
    mirrored = mirror_pixels(pixels)
    grid = (7, -(-width // 32))
    assert mirrored.shape == (200, grid[1] * 32)
    np.testing.assert_array_equal(mirrored[:, ::-1][:, :width], pixels)  # padding on the right, then mirrored
    record = Mammogram("mdb005", "F", (Lesion("CIRC", "B", 100.0, 40.0, 20.0), Lesion("CALC", "M")))
    cells = CellFeatures(np.zeros((1, *grid), np.float16), np.ones(grid, bool), 32.0)
    twin = mirrored_record(record, cells)
    assert is_mirror(twin.ref) and not is_mirror(record.ref) and twin.lesions[1] == record.lesions[1]
    np.testing.assert_array_equal(cell_labels(twin, grid, 32.0), cell_labels(record, grid, 32.0)[:, ::-1])


def test_mirror_images_train_beside_their_films(synthetic_folder):
    from napari_mammo.data.preprocess import to_mias_scale
    from napari_mammo.io.images import read_image
    from napari_mammo.models.backbone import load_backbone
    from napari_mammo.models.screening import cell_feature_set
    from napari_mammo.models.tuned_cells import maps_both_ways, mirror_pixels, mirror_ref, tuned_maps

    records = read_folder(synthetic_folder)
    config = ScreeningConfig(tune_epochs=1, tune_steps=40, tune_batch=8, tune_mirrors=True)
    cells, stage4 = load_screening_features(records, config)
    assert set(stage4) == {r.ref for r in records} | {mirror_ref(r.ref) for r in records}
    pixels, _ = to_mias_scale(read_image(records[4].path).pixels, None)
    expected = cell_feature_set(load_backbone(), mirror_pixels(pixels), None, (config.features, config.tuned))
    np.testing.assert_array_equal(stage4[mirror_ref(records[4].ref)].features, expected[1].features)
    net = fine_tune_cells(records, stage4, cells, config)
    assert lesion_cell_auc(net, records, cells, stage4) > 0.9
    assert set(tuned_maps(net, stage4)) == {r.ref for r in records}  # the films' maps, not the mirrors'
    plain_cells, plain_stage4 = load_screening_features(records, ScreeningConfig(tune_mirrors=False,
                                                                                 box_mirrors=False))
    assert set(plain_stage4) == {r.ref for r in records}
    with pytest.raises(ValueError, match="tune_mirrors needs the mirror images' features"):
        fine_tune_cells(records, plain_stage4, plain_cells, config)
    with pytest.raises(ValueError, match="test-time mirrors need the mirror images' features"):
        maps_both_ways(net, plain_stage4, tuned_maps(net, plain_stage4))
    # test-time mirrors alone also read the mirror images
    assert set(load_screening_features(records, ScreeningConfig(tune_mirrors=False))[1]) == set(stage4)


@pytest.mark.parametrize("mirrors", [False, True])
def test_screener_boxes_and_heatmap_come_from_the_tuned_map_as_fitted(screening_file, synthetic_folder, tmp_path,
                                                                      mirrors):
    from napari_mammo.data.preprocess import to_mias_scale
    from napari_mammo.io.images import read_image
    from napari_mammo.models.screener import Screener
    from napari_mammo.models.tuned_cells import maps_both_ways

    screener = Screener.load(rewrite(screening_file, tmp_path, lambda state: None,
                                     lambda metadata: metadata["config"].update(box_mirrors=mirrors)))
    assert screener.tuned is not None and screener.config.box_mirrors == mirrors
    for ref in ("mdb005", "mdb006"):
        path = synthetic_folder / f"{ref}.pgm"
        result = screener.screen_file(path)
        record = next(r for r in read_folder(synthetic_folder) if r.ref == ref)
        cells, stage4 = load_screening_features([record], screener.config)  # as cross-validation reads them
        expected = tuned_scores(screener.tuned, stage4[ref].features)
        if mirrors:
            expected = maps_both_ways(screener.tuned, stage4, {ref: expected})[ref]
        breast = cells[ref].breast
        np.testing.assert_allclose(result.heatmap, np.where(breast, expected, 0), atol=1e-5)
        boxes = cell_boxes(expected, breast, 32.0)  # a 0.2 mm image: no rescaling
        np.testing.assert_allclose([(*b, s) for b, s in result.boxes], [(*b, s) for b, s in boxes], atol=1e-5)
        assert to_mias_scale(read_image(path).pixels, None)[1] == pytest.approx((1.0, 1.0))
    assert read_image(synthetic_folder / "mdb006.pgm").pixels.max() < 255  # uint8 not spanning 0-255, as MIAS's


def test_test_time_mirrors_average_the_film_and_its_mirror_image(screening_file, synthetic_folder, tmp_path):
    from napari_mammo.io.images import read_image
    from napari_mammo.models.screener import Screener
    from napari_mammo.models.tuned_cells import mirror_pixels

    def with_mirrors(on: bool) -> Screener:
        (tmp_path / str(on)).mkdir()
        return Screener.load(rewrite(screening_file, tmp_path / str(on), lambda state: None,
                                     lambda metadata: metadata["config"].update(box_mirrors=on)))

    plain, mirrored = with_mirrors(False), with_mirrors(True)
    pixels = read_image(synthetic_folder / "mdb005.pgm").pixels[:, :250]  # not whole cells: padded, then mirrored
    film, flipped = plain.screen(pixels), plain.screen(mirror_pixels(pixels))
    events = []
    both = mirrored.screen(pixels, progress=events.append)
    assert [e["step"] for e in events] == [1, 2, 3]
    back = flipped.heatmap[:, ::-1]
    inside = (film.heatmap > 0) & (back > 0)  # each film's own breast
    assert inside.sum() > 0.9 * (film.heatmap > 0).sum()
    np.testing.assert_allclose(both.heatmap[inside], (film.heatmap + back)[inside] / 2, atol=1e-5)
    assert not np.allclose(both.heatmap, film.heatmap, atol=1e-3)
    assert both.boxes[0][1] != pytest.approx(film.boxes[0][1], abs=1e-4)
    assert both.score == pytest.approx(film.score) and both.label == film.label  # the verdict reads the film alone


def rewrite(screening_file, tmp_path, change, change_metadata=None) -> object:
    """A copy of the screening weights with `change(state)` (and `change_metadata(metadata)`) applied, written as
    another program would."""
    from safetensors.torch import save_file

    from napari_mammo.engine.weights import load_weights

    state, metadata = load_weights(screening_file, "screening")
    metadata.pop("format_version"), metadata.pop("model")
    change(state)
    if change_metadata is not None:
        change_metadata(metadata)
    out = tmp_path / "changed.safetensors"
    save_file(state, str(out), metadata={"model": "screening", **{k: json.dumps(v) for k, v in metadata.items()}})
    return out


def test_tuned_cells_with_nan_are_refused_on_load(screening_file, tmp_path):
    from napari_mammo.models.screener import Screener

    def poison(state):
        key = next(k for k in state if k.startswith("tuned.") and k.endswith("weight"))
        state[key].view(-1)[0] = float("nan")

    with pytest.raises(MammoInputError, match=r"tensor tuned\..* holds NaN"):
        Screener.load(rewrite(screening_file, tmp_path, poison))


def drop_tuned(state, prefixes=("tuned.", "verdict_map.")) -> None:
    """Remove the tuned maps' tensors (those whose names start with `prefixes`) from a weights file's state."""
    for key in [k for k in state if k.startswith(prefixes)]:
        del state[key]


def drop_tuned_scores(metadata) -> None:
    """Remove the tuned maps' asymmetries from a weights file's verdict."""
    for key in ("tuned_asymmetry", "verdict_map_asymmetry"):
        metadata["standardise"].pop(key, None)


def test_weights_without_a_tuned_map_take_their_boxes_from_the_cell_head(screening_file, synthetic_folder, tmp_path):
    from napari_mammo.models.screener import Screener

    screener = Screener.load(rewrite(screening_file, tmp_path, drop_tuned, drop_tuned_scores))
    assert screener.tuned is None
    result = screener.screen_file(synthetic_folder / "mdb005.pgm")
    tuned = Screener.load(screening_file).screen_file(synthetic_folder / "mdb005.pgm")
    assert result.label == tuned.label and result.probabilities == tuned.probabilities  # the verdict is the heads'
    assert not np.allclose(result.heatmap, tuned.heatmap)


def test_weights_summing_a_tuned_asymmetry_without_its_map_are_refused(screening_file, tmp_path):
    from napari_mammo.models.screener import Screener

    with pytest.raises(MammoInputError, match="changed.safetensors.*verdict map's asymmetry, but it holds no verdict"):
        Screener.load(rewrite(screening_file, tmp_path, lambda state: drop_tuned(state, ("verdict_map.",))))

    def boxes_map_summed(metadata):
        metadata["standardise"]["tuned_asymmetry"] = [0.0, 1.0]

    with pytest.raises(MammoInputError, match="changed.safetensors.*asymmetry, but it holds no tuned map"):
        Screener.load(rewrite(screening_file, tmp_path, lambda state: drop_tuned(state, ("tuned.",)),
                              boxes_map_summed))


@pytest.mark.parametrize("spread", [[0.1, 0.0], [float("nan"), 1.0], ["a", 1.0], [0.1]])
def test_a_score_spread_that_cannot_standardise_is_refused(screening_file, tmp_path, spread):
    from napari_mammo.models.screener import Screener

    def change(metadata):
        metadata["standardise"]["verdict_map_asymmetry"] = spread

    with pytest.raises(MammoInputError, match="changed.safetensors.*(spread|spreads)"):
        Screener.load(rewrite(screening_file, tmp_path, lambda state: None, change))


def verdict_of_maps(screener, synthetic_folder, *keys: str) -> tuple[dict, float]:
    """The both-films scores of mdb005 (with mdb006) computed by hand from the tuned maps whose asymmetries are
    `keys`, and the calibrated probability they give."""
    from napari_mammo.models.screener import logistic
    from napari_mammo.models.screening import fuse, image_score

    records = [r for r in read_folder(synthetic_folder) if r.ref in ("mdb005", "mdb006")]
    cells, stage4 = load_screening_features(records, screener.config)
    maps = {key: {ref: tuned_scores(screener.tuned_map(key), stage4[ref].features) for ref in ("mdb005", "mdb006")}
            for key in keys}
    fine = (stage4["mdb005"], stage4["mdb006"]) if screener.heads.fine is not None else None
    values, _ = screener.heads.film_scores(cells["mdb005"], cells["mdb006"],
                                           {key: (found["mdb005"], found["mdb006"]) for key, found in maps.items()},
                                           fine)
    for key, found in maps.items():
        own, other = (image_score(found[ref], cells[ref].breast) for ref in ("mdb005", "mdb006"))
        assert values[key] == pytest.approx(own - other)
    if fine is not None:  # the fine head's asymmetry, on the stage-4 cells as cross-validation reads them
        own, other = (image_score(screener.heads.fine.scores(found.features), found.breast) for found in fine)
        assert values["fine_asymmetry"] == pytest.approx(own - other)
    return values, logistic(fuse(values, screener.heads.standardise), *screener.metadata["calibration"]["both"])


def test_the_both_films_verdict_sums_the_verdict_maps_asymmetry(screening_file, synthetic_folder):
    from napari_mammo.models.screener import Screener
    from napari_mammo.models.screening import fuse

    screener = Screener.load(screening_file)
    assert screener.config.two_maps
    assert set(screener.heads.standardise) == {"cells", "contralateral", "asymmetry", "verdict_map_asymmetry",
                                               "fine_asymmetry"}
    result = screener.screen_file(synthetic_folder / "mdb005.pgm", other=synthetic_folder / "mdb006.pgm")
    values, expected = verdict_of_maps(screener, synthetic_folder, "verdict_map_asymmetry")
    assert result.both_breasts and result.score == pytest.approx(expected, abs=1e-5)
    without = {k: v for k, v in screener.heads.standardise.items() if k != "verdict_map_asymmetry"}
    assert fuse(values, without) != pytest.approx(fuse(values, screener.heads.standardise))
    # two maps, fitted apart: the boxes' map with mirror images, the verdict's on the films alone
    boxes, verdict = screener.tuned_map("tuned_asymmetry"), screener.tuned_map("verdict_map_asymmetry")
    assert not np.array_equal(boxes[-1].weight.detach().numpy(), verdict[-1].weight.detach().numpy())


def test_one_map_weights_sum_its_own_asymmetry(synthetic_folder, tmp_path):
    from napari_mammo.models.screener import Screener
    from napari_mammo.models.screening import ScreeningConfig
    from napari_mammo.training.screening import fit_screener

    records = read_folder(synthetic_folder)
    config = ScreeningConfig(tune_epochs=1, tune_steps=2, tune_batch=4, verdict_map=False)
    cells, stage4 = load_screening_features(records, config)
    out = tmp_path / "one-map.safetensors"
    fit_screener(records, cells, out, config, folds=3, seeds=1, stage4=stage4)
    screener = Screener.load(out)
    assert not screener.config.two_maps and screener.tuned_map("verdict_map_asymmetry") is None
    assert set(screener.heads.standardise) == {"cells", "contralateral", "asymmetry", "tuned_asymmetry",
                                               "fine_asymmetry"}
    result = screener.screen_file(synthetic_folder / "mdb005.pgm", other=synthetic_folder / "mdb006.pgm")
    assert result.score == pytest.approx(verdict_of_maps(screener, synthetic_folder, "tuned_asymmetry")[1], abs=1e-5)


def test_a_layer_off_the_tuned_maps_grid_is_refused_with_the_way_out(synthetic_folder, capsys):
    from napari_mammo.cli import main

    args = ["crossval", "screening", "--data", str(synthetic_folder), "--folds", "3", "--layer", "stage4"]
    assert main(args) == 2
    assert "--tune-epochs 0" in capsys.readouterr().err


@pytest.mark.parametrize("config", [{"tune_epochs": 0}, {"layer": "stage4"}])
def test_a_tuned_map_its_config_cannot_read_is_refused_naming_the_file(screening_file, tmp_path, config):
    from napari_mammo.engine.weights import load_weights, save_weights
    from napari_mammo.models.screener import Screener

    state, metadata = load_weights(screening_file, "screening")
    metadata.pop("format_version"), metadata.pop("model")
    metadata["config"].update(config)
    bad = tmp_path / "odd-config.safetensors"
    save_weights(bad, state, "screening", metadata)
    with pytest.raises(MammoInputError, match="odd-config.safetensors.*tuned cell map that cannot be used"):
        Screener.load(bad)


def test_the_verdict_map_is_fitted_for_its_own_epochs_and_never_for_none():
    config = ScreeningConfig(tune_epochs=30, verdict_tune_epochs=15)
    assert config.verdict_fit.tune_epochs == 15 and not config.verdict_fit.tune_mirrors and config.tune_epochs == 30
    with pytest.raises(ValueError, match="verdict_tune_epochs 0.*--no-verdict-map"):
        ScreeningConfig(verdict_tune_epochs=0)
    assert not ScreeningConfig(verdict_tune_epochs=0, verdict_map=False).two_maps


def test_the_command_refuses_a_verdict_map_of_no_epochs_in_one_line(synthetic_folder, tmp_path, capsys):
    from napari_mammo.cli import main

    out = tmp_path / "screening.safetensors"
    assert main(["train", "screening", "--data", str(synthetic_folder), "--out", str(out), "--folds", "3",
                 "--verdict-epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--no-verdict-map" in err and not out.exists()


def test_a_verdict_of_both_maps_sums_both_asymmetries(synthetic_folder, tmp_path):
    from napari_mammo.models.screener import Screener
    from napari_mammo.models.screening import TUNED_SCORES, fuse
    from napari_mammo.training.screening import fit_screener

    records = read_folder(synthetic_folder)
    config = ScreeningConfig(tune_epochs=1, tune_steps=2, tune_batch=4, verdict_tune_epochs=1, verdict_both_maps=True)
    cells, stage4 = load_screening_features(records, config)
    out = tmp_path / "both-maps.safetensors"
    summary = fit_screener(records, cells, out, config, folds=3, seeds=1, stage4=stage4)["crossval"]["summary"]
    # in cross-validation the verdict is then the sum that is otherwise reported beside it
    assert summary["auc_fused"]["mean"] == pytest.approx(summary["auc_fused_both_maps"]["mean"], nan_ok=True)
    screener = Screener.load(out)
    assert set(screener.heads.standardise) == {"cells", "contralateral", "asymmetry", *TUNED_SCORES, "fine_asymmetry"}
    result = screener.screen_file(synthetic_folder / "mdb005.pgm", other=synthetic_folder / "mdb006.pgm")
    values, expected = verdict_of_maps(screener, synthetic_folder, *TUNED_SCORES)
    assert result.score == pytest.approx(expected, abs=1e-5)
    alone = {k: v for k, v in screener.heads.standardise.items() if k != "tuned_asymmetry"}
    assert fuse(values, alone) != pytest.approx(fuse(values, screener.heads.standardise))
