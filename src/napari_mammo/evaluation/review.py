"""Reviewing predictions against the ground truth: one image, or a whole labelled folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_mammo.engine.progress import progress_event
from napari_mammo.evaluation.detector import match_lesions
from napari_mammo.models.idbll.predict import Detection
from napari_mammo.records import Mammogram


@dataclass
class ImageReview:
    """One image's predictions against its truth."""

    ref: str
    path: str
    truth: str
    verdict: str
    abnormality: float
    best_box: float
    lesions: int
    found: int
    false_positives: int
    films: str = ""
    """"both" when the verdict compared the woman's other film, "this one" when it read this film alone (the
    poster's models always do); "" when not known."""


def review_image(record: Mammogram, verdict: str, abnormality: float, detections: Sequence[Detection],
                 threshold: float, both_breasts: bool | None = None) -> ImageReview:
    """Compare one image's verdict and boxes (those scoring ≥ threshold) with its record."""
    shown = [d for d in detections if d.score >= threshold]
    hit, found = match_lesions(shown, record)
    films = "" if both_breasts is None else ("both" if both_breasts else "this one")
    return ImageReview(record.ref, str(record.path), record.label, verdict, abnormality,
                       max((d.score for d in detections), default=0.0), len(found), int(found.sum()),
                       int((~hit).sum()), films)


def summarise(reviews: Sequence[ImageReview]) -> dict:
    """Lesion sensitivity, false positives per image and verdict accuracy over reviewed images."""
    lesions = sum(r.lesions for r in reviews)
    return {
        "images": len(reviews),
        "lesions": lesions,
        "sensitivity": sum(r.found for r in reviews) / lesions if lesions else float("nan"),
        "fp_per_image": sum(r.false_positives for r in reviews) / len(reviews) if reviews else float("nan"),
        "accuracy": float(np.mean([r.truth == r.verdict for r in reviews])) if reviews else float("nan"),
    }


@dataclass
class Prediction:
    """The models' raw output on one labelled image (verdict, p(abnormal), boxes), kept so a new box threshold
    needs no rerun."""

    record: Mammogram
    verdict: str
    abnormality: float
    detections: list[Detection]
    both_breasts: bool | None = None
    """Whether the verdict compared the woman's other film (None: not known)."""


def iter_predict_folder(records: Sequence[Mammogram], classifier, detector):
    """Generator of progress events that classifies (CNNI-BCC) and detects (IDBLL) every image.

    Returns (predictions, skipped): an image that cannot be read or run (truncated, constant,
    …) is skipped with its error message instead of ending the review.
    """
    from napari_mammo.io.images import read_image

    def predict(record: Mammogram) -> Prediction:
        image = read_image(record.path)
        result = classifier.classify(image.pixels, image.spacing_mm)
        detections = detector.detect(image.pixels, image.spacing_mm, score_threshold=0.01)
        return Prediction(record, result.label, 1.0 - result.probabilities["normal"], detections, False)

    return (yield from _iter_folder(records, predict))


def iter_screen_folder(records: Sequence[Mammogram], screener):
    """Generator of progress events that screens every image, with the woman's other film when it is beside it
    (its verdict and its boxes); returns (predictions, skipped) as `iter_predict_folder`.

    An other film that cannot be read is left out (the film is screened alone; the broken film
    is reported as skipped in its own turn); one that is read but refused (another size, view or
    woman) skips the image with the reason, as `evaluate screening` refuses it.
    """
    from napari_mammo.errors import MammoInputError
    from napari_mammo.io.images import read_single_image
    from napari_mammo.models.screener import partner_file

    def predict(record: Mammogram) -> Prediction:
        image = read_single_image(record.path)
        partner, second = partner_file(record.path), None
        if partner is not None:
            try:
                second = read_single_image(partner)
            except MammoInputError:
                partner = None
        result = screener.screen_read(image, record.path, second, partner)
        return Prediction(record, result.label, 1.0 - result.probabilities["normal"], result.detections(),
                          result.both_breasts)

    return (yield from _iter_folder(records, predict))


def _iter_folder(records: Sequence[Mammogram], predict):
    """Run `predict` on every record, reporting progress; an image it cannot take is skipped with its message."""
    from napari_mammo.errors import MammoInputError

    predictions, skipped = [], []
    for index, record in enumerate(records):
        try:
            predictions.append(predict(record))
        except MammoInputError as err:
            skipped.append(str(err))
        except ValueError as err:  # the models' own checks (a constant image, …) do not name the file
            skipped.append(str(MammoInputError(record.path, str(err))))
        yield progress_event("reviewing", index + 1, len(records))
    return predictions, skipped


def review_predictions(predictions: Sequence[Prediction], threshold: float) -> tuple[list[ImageReview], dict]:
    """Per-image reviews at a box threshold (most suspicious first), the summary, FROC and ROC."""
    from napari_mammo.evaluation.detector import froc, sensitivity_at
    from napari_mammo.evaluation.metrics import roc_auc, roc_curve

    reviews = sorted((review_image(p.record, p.verdict, p.abnormality, p.detections, threshold, p.both_breasts)
                      for p in predictions), key=lambda r: -r.abnormality)
    summary = summarise(reviews)
    curve = froc([(p.detections, p.record) for p in predictions])
    abnormal = np.array([p.record.label != "normal" for p in predictions], bool)
    scores = np.array([p.abnormality for p in predictions], float)
    summary.update({
        "threshold": threshold,
        "froc": curve,
        "sensitivity_at_fp": {str(fp): sensitivity_at(curve, fp) for fp in (0.5, 1, 2)},
        "roc_normal_vs_abnormal": [c.tolist() for c in roc_curve(abnormal, scores)],
        "auc_normal_vs_abnormal": roc_auc(abnormal, scores),
    })
    return reviews, summary


def format_review(reviews: Sequence[ImageReview], summary: dict) -> str:
    """A table of reviewed images (most suspicious first) and the summary lines."""
    lines = [f"{'image':<10} {'truth':<10} {'verdict':<10} {'abnormality':>11} {'best box':>8} "
             f"{'found':>9} {'FP':>3}  films"]
    for r in reviews:
        lines.append(f"{r.ref:<10} {r.truth:<10} {r.verdict:<10} {r.abnormality:11.3f} {r.best_box:8.3f} "
                     f"{r.found:>4} of {r.lesions:<2} {r.false_positives:>3}  {r.films}".rstrip())
    sens = summary["sensitivity_at_fp"]
    lines += [f"{summary['images']} images, {summary['lesions']} located lesions: sensitivity "
              f"{summary['sensitivity']:.3f} at {summary['fp_per_image']:.2f} FP/image (boxes >= "
              f"{summary['threshold']:.2f}); FROC {sens['0.5']:.3f} / {sens['1']:.3f} / {sens['2']:.3f} at "
              "0.5 / 1 / 2 FP/image",
              f"verdict accuracy {summary['accuracy']:.3f}; AUC normal vs abnormal "
              f"{summary['auc_normal_vs_abnormal']:.3f}"]
    return "\n".join(lines)
