"""The fine cell head: a frozen head on stage-4 features whose asymmetry the both-films verdict sums."""

import json

import numpy as np
import pytest

from napari_mammo import MammoInputError, read_folder
from napari_mammo.evaluation.crossval import load_screening_features
from napari_mammo.models.screening import FINE_ASYMMETRY, ScreeningConfig, fit_heads
from test_tuned_cells import rewrite


def logit(p: float) -> float:
    """The log-odds of a probability."""
    return float(np.log(p / (1 - p)))


def drop_fine(state) -> None:
    """Remove the fine head's tensors from a weights file's state."""
    for key in [k for k in state if k.startswith("fine_cells.")]:
        del state[key]


def test_the_fine_asymmetry_joins_the_both_films_verdict_and_older_weights_still_screen(screening_file,
                                                                                       synthetic_folder, tmp_path):
    from napari_mammo.models.screener import Screener

    screener = Screener.load(screening_file)
    assert screener.heads.fine is not None and FINE_ASYMMETRY in screener.heads.standardise
    films = synthetic_folder / "mdb005.pgm", synthetic_folder / "mdb006.pgm"
    both, alone = screener.screen_file(films[0], other=films[1]), screener.screen_file(films[0])
    # weights from before the fine head: no tensors, no spread; they load and screen without it
    older = Screener.load(rewrite(screening_file, tmp_path, drop_fine,
                                  lambda metadata: metadata["standardise"].pop(FINE_ASYMMETRY)))
    assert older.heads.fine is None
    assert older.screen_file(films[0]).probabilities == alone.probabilities  # one film: the cell score alone
    records = [r for r in read_folder(synthetic_folder) if r.ref in ("mdb005", "mdb006")]
    cells, stage4 = load_screening_features(records, screener.config)  # as cross-validation reads them
    values, _ = screener.heads.film_scores(cells["mdb005"], cells["mdb006"], fine=(stage4["mdb005"], stage4["mdb006"]))
    assert values[FINE_ASYMMETRY] != 0
    mean, sd = screener.heads.standardise[FINE_ASYMMETRY]
    a = screener.metadata["calibration"]["both"][0]
    # the rest of the verdict is the same, so the calibrated logits differ by a times the standardised fine score
    shift = logit(both.score) - logit(older.screen_file(films[0], other=films[1]).score)
    assert shift == pytest.approx(a * (values[FINE_ASYMMETRY] - mean) / sd, abs=1e-4)


def test_weights_summing_the_fine_asymmetry_without_its_head_are_refused(screening_file, tmp_path):
    from napari_mammo.models.screener import Screener

    with pytest.raises(MammoInputError, match="changed.safetensors.*fine_cells head is incomplete"):
        Screener.load(rewrite(screening_file, tmp_path, drop_fine))


def test_the_fine_head_needs_stage4_features(synthetic_folder):
    records = read_folder(synthetic_folder)
    cells, stage4 = load_screening_features(records, ScreeningConfig(tune_epochs=0))
    by_ref = {r.ref: r for r in records}
    with pytest.raises(ValueError, match="stage-4 features"):
        fit_heads(records, cells, by_ref, ScreeningConfig(tune_epochs=0))
    heads = fit_heads(records, cells, by_ref, ScreeningConfig(tune_epochs=0), fine=stage4)
    assert heads.fine is not None and heads.fine.weight.shape == (stage4["mdb005"].features.shape[0],)
    assert fit_heads(records, cells, by_ref, ScreeningConfig(tune_epochs=0, fine_asymmetry=False)).fine is None


@pytest.mark.parametrize("fine", [True, False])
def test_crossval_reports_the_fine_asymmetry_unless_turned_off(synthetic_folder, tmp_path, monkeypatch, fine):
    from napari_mammo.cli import main

    monkeypatch.setenv("NAPARI_MAMMO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cv.json"
    switch = "--fine-asymmetry" if fine else "--no-fine-asymmetry"
    assert main(["crossval", "screening", "--data", str(synthetic_folder), "--folds", "3", "--out", str(out),
                 "--tune-epochs", "0", switch]) == 0
    report = json.loads(out.read_text())
    assert report["config"]["fine_asymmetry"] is fine
    assert ("auc_fine_asymmetry" in report["summary"]) is fine
    # stage 4 is read (and cached) only for the fine head: the tuned maps are off
    assert bool(list((tmp_path / "cache").rglob("stage4-x1/*.npz"))) is fine
