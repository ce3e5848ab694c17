"""The shipped screening model: cell heads on the pretrained backbone, fitted on every training image.

Its image verdict is calibrated on cross-validated (held-out) scores, and its operating
point was chosen on them for a stated sensitivity; both travel in the weights' metadata
with the cross-validated figures, as does the boxes' default threshold (1 false positive
per image on held-out films). When the woman's other film is given, the left-minus-right
head and the difference of the two films' cell scores (and of their verdict map's or tuned
map's scores, and of the fine cell head's on stage-4 features, as the weights say) join the
cell score; without it the single-film path runs and the result says so. The heatmap and
the boxes come from the tuned cell map (`tuned_cells`) when the weights hold one, else from
the cell head; with the weights' `box_mirrors`, from that map read on the film and on its
mirror image, averaged.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_mammo.data.preprocess import model_pixels, to_mias_scale
from napari_mammo.engine.progress import Progress, StopFlag, progress_event, run_to_end
from napari_mammo.errors import MammoInputError
from napari_mammo.models.screening import (
    FINE_ASYMMETRY,
    FUSED,
    TUNED_ASYMMETRY,
    TUNED_SCORES,
    VERDICT_ASYMMETRY,
    CellFeatures,
    CellHead,
    ScreeningConfig,
    ScreeningHeads,
    backbone_maps,
    box_detections,
    cell_boxes,
    cell_breast,
    film_features,
    fuse,
    smooth_scores,
)
from napari_mammo.models.tuned_cells import (
    VERDICT_PREFIX,
    both_ways,
    mirror_pixels,
    tuned_net,
    tuned_scores,
    tuned_state,
)
from napari_mammo.records import CLASS_NAMES, partner_of

MODEL_NAME = "screening"
HEADS = ("cells", "severity", "contralateral")
FINE_HEAD = "fine_cells"
"""The fine cell head's tensors' name, in weights whose verdict sums its asymmetry (`FINE_ASYMMETRY`)."""


def head_tensors(name: str, head: CellHead) -> dict:
    """A head as named tensors for a weights file."""
    import torch

    return {f"{name}.mean": torch.from_numpy(np.asarray(head.mean, np.float32)),
            f"{name}.std": torch.from_numpy(np.asarray(head.std, np.float32)),
            f"{name}.weight": torch.from_numpy(np.asarray(head.weight, np.float32)),
            f"{name}.bias": torch.tensor([head.bias], dtype=torch.float32)}


def head_from(state: dict, name: str, path: Path) -> CellHead:
    """A head from a weights file's tensors, refusing missing or non-finite ones."""
    try:
        parts = [state[f"{name}.{part}"].numpy() for part in ("mean", "std", "weight", "bias")]
    except KeyError as err:
        raise MammoInputError(path, f"the {name} head is incomplete (no {err.args[0]})") from None
    if not all(np.isfinite(p).all() for p in parts):
        raise MammoInputError(path, f"the {name} head holds NaN or infinite values")
    mean, std, weight, bias = parts
    if not (mean.shape == std.shape == weight.shape) or (std <= 0).any():
        raise MammoInputError(path, f"the {name} head's tensors do not fit together")
    return CellHead(mean, std, weight, float(bias[0]))


def logistic(x: float, a: float, b: float) -> float:
    """Platt calibration: 1 / (1 + exp(-(a·x + b)))."""
    return float(1.0 / (1.0 + np.exp(-(a * x + b))))


def box_threshold(metadata: dict) -> float:
    """The boxes' default score threshold: the one that gave 1 false positive per image on held-out films, where
    the weights record it (`fit_screener`), else IDBLL's."""
    from napari_mammo.models.idbll.predict import BOX_THRESHOLD

    return float((metadata.get("box_operating_point") or {}).get("threshold", BOX_THRESHOLD))


KEPT_FILMS = 2
"""How many films' backbone features a Screener keeps: a woman's two, screened one after the other."""


@dataclass
class FilmFeatures:
    """One film's backbone features: its cells, its stage-4 features (None when not read), its (row, column)
    resampling scale, its pixels at 0.2 mm and their breast mask, and the tuned maps read from them."""

    cells: CellFeatures
    stage4: np.ndarray | None
    scale: np.ndarray
    scaled: np.ndarray
    mask: np.ndarray
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    """Its tuned maps by score name (`Screener._maps`), as they are read."""
    boxes: np.ndarray | None = None
    """The boxes' map read both ways (`Screener.boxes_map`), once it has been."""
    fine: CellFeatures | None = None
    """Its stage-4 cells with their breast cells, for the fine head (`Screener._fine`), once made."""


class OtherFilmError(ValueError):
    """The woman's other film cannot be used: the image itself, or one the backbone cannot take."""


@dataclass
class Screening:
    """One image's screening: verdict, probabilities, patches (as CNNI-BCC gives them), heatmap and boxes."""

    label: str
    probabilities: dict
    patches: list[dict]
    label_image: np.ndarray
    patch_image: np.ndarray
    heatmap: np.ndarray
    heatmap_stride: np.ndarray
    boxes: list[tuple[tuple[float, float, float, float], float]]
    score: float
    threshold: float
    both_breasts: bool
    model = MODEL_NAME
    """The model that gave it (a class constant, not a field)."""

    def detections(self, min_score: float = 0.0) -> list:
        """Its boxes scoring at least `min_score`, as lesion Detections (IDBLL's format)."""
        return box_detections(self.boxes, min_score)

    def to_json(self, path: str) -> dict:
        """The command line's JSON object: the CNNI-BCC fields, plus the screening's own."""
        return {"path": path, "label": self.label, "probabilities": self.probabilities, "patches": self.patches,
                "model": MODEL_NAME, "score": self.score, "threshold": self.threshold,
                "both_breasts": self.both_breasts}


class Screener:
    """Loaded screening heads with the backbone, ready to screen whole images."""

    def __init__(self, heads: ScreeningHeads, metadata: dict, source: Path, tuned: dict | None = None,
                 verdict: dict | None = None) -> None:
        self.heads, self.metadata, self.source = heads, metadata, source
        self.config = ScreeningConfig(**metadata["config"])
        self._backbone = None
        # each tuned map's tensors by the score its asymmetry gives: the boxes' map, and the verdict's own map
        self._tensors = {key: tensors for key, tensors in zip(TUNED_SCORES, (tuned, verdict), strict=True)
                         if tensors is not None}
        self._nets: dict = {}
        self._films: dict[tuple, FilmFeatures] = {}  # the last KEPT_FILMS films' features, oldest first
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path | None = None) -> Screener:
        """Load screening weights (the shipped default when `path` is None)."""
        from napari_mammo.engine.weights import load_weights, shipped_weights

        path = Path(path) if path is not None else shipped_weights(MODEL_NAME)
        state, metadata = load_weights(path, MODEL_NAME)
        fitted = {name: head_from(state, name, path) for name in HEADS}
        fine = head_from(state, FINE_HEAD, path) if FINE_ASYMMETRY in metadata.get("standardise", {}) else None
        calibration = metadata.get("calibration", {})
        thresholds = [metadata.get("threshold"), metadata.get("single_film_threshold")]
        if "box_operating_point" in metadata:  # weights from before it use IDBLL's box threshold
            point = metadata["box_operating_point"]
            thresholds.append(point.get("threshold") if isinstance(point, dict) else None)
        numbers = [v for pair in calibration.values() for v in pair] + thresholds
        if not {"single", "both"} <= set(calibration) or not all(
                isinstance(v, int | float) and np.isfinite(v) for v in numbers):
            raise MammoInputError(path, "the calibration or threshold in its metadata is missing or not finite")
        if not all(0 <= t <= 1 for t in thresholds):
            raise MammoInputError(path, f"a threshold of {thresholds} is outside [0, 1]")
        try:
            config = ScreeningConfig(**metadata["config"])
            keys = (*FUSED, *(key for key in (*TUNED_SCORES, FINE_ASYMMETRY) if key in metadata["standardise"]))
            standardise = {key: tuple(float(v) for v in metadata["standardise"][key]) for key in keys}
        except (KeyError, TypeError, ValueError):
            raise MammoInputError(path, "no readable screening config or score spreads in its metadata") from None
        if not all(len(pair) == 2 and np.isfinite(pair).all() and pair[1] > 0 for pair in standardise.values()):
            raise MammoInputError(path, "a score spread in its metadata is not a finite mean and positive sd")
        tuned, verdict = tuned_state(state), tuned_state(state, VERDICT_PREFIX)
        if TUNED_ASYMMETRY in standardise and tuned is None:
            raise MammoInputError(path, "its verdict sums the tuned cell map's asymmetry, but it holds no tuned map")
        if VERDICT_ASYMMETRY in standardise and verdict is None:
            raise MammoInputError(path, "its verdict sums the verdict map's asymmetry, but it holds no verdict map")
        if tuned is not None or verdict is not None:
            try:
                if config.tuned is None:
                    raise ValueError(f"its config has tune_epochs {config.tune_epochs}")
            except ValueError as err:  # also a layer off the tuned map's grid
                raise MammoInputError(path, f"holds a tuned cell map that cannot be used: {err}") from None
        heads = ScreeningHeads(**fitted, standardise=standardise, top_cells=config.top_cells, fine=fine)
        return cls(heads, metadata, path, tuned, verdict)

    @property
    def backbone(self):
        """The pretrained backbone, loaded on first use."""
        if self._backbone is None:
            from napari_mammo.models.backbone import load_backbone

            self._backbone = load_backbone(self.config.backbone)
        return self._backbone

    @property
    def tuned(self):
        """The tuned cell map (boxes and heatmap), built on first use; None for weights without one."""
        return self.tuned_map(TUNED_ASYMMETRY)

    def tuned_map(self, key: str):
        """The tuned map whose asymmetry is score `key` (TUNED_SCORES), built on first use; None when the weights
        hold none."""
        if key not in self._nets and key in self._tensors:
            name = "tuned cells" if key == TUNED_ASYMMETRY else "verdict map's tuned cells"
            self._nets[key] = tuned_net(self._tensors[key], self.backbone, self.source, name)
        return self._nets.get(key)

    @property
    def box_threshold(self) -> float:
        """The boxes' default score threshold (see `box_threshold`)."""
        return box_threshold(self.metadata)

    def threshold(self, both_breasts: bool) -> float:
        """The verdict's operating point on the calibrated abnormality probability, with or without the other film."""
        return float(self.metadata["threshold" if both_breasts else "single_film_threshold"])

    def _maps(self, film: FilmFeatures, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """A film's tuned maps named in `keys` (TUNED_SCORES) that the weights hold, each read once a film."""
        held = [key for key in keys if key in self._tensors]
        for key in held:
            if key not in film.maps:
                film.maps[key] = tuned_scores(self.tuned_map(key), film.stage4)
        return {key: film.maps[key] for key in held}

    def _film(self, pixels: np.ndarray, spacing_mm, keys: Iterable[str] = ()) -> FilmFeatures:
        """A film's backbone features (with stage 4 when a tuned map in `keys` is held), kept for the next
        screening: a woman's two films screened one after the other, each with the other, or one film classified
        and then detected, run the backbone once a film."""
        model_pixels(pixels, "screen")  # refuses what cannot be screened
        pixels = np.asarray(pixels)
        stage4 = any(key in self._tensors for key in keys) or (FINE_ASYMMETRY in keys and self.heads.fine is not None)
        identity = (hashlib.blake2b(np.ascontiguousarray(pixels).tobytes(), digest_size=16).hexdigest(),
                    pixels.shape, str(pixels.dtype), tuple(spacing_mm) if spacing_mm else None)
        with self._lock:
            film = self._films.pop(identity, None)
            if film is not None and (film.stage4 is not None or not stage4):
                self._films[identity] = film  # now the newest
                return film
        # the raw pixels, as the heads were fitted on (`load_feature_sets`): a uint8 film is scaled by /255 and
        # not stretched to its own range, which [0, 1] pixels would be again in `backbone_maps`
        scaled, scale = to_mias_scale(pixels, spacing_mm)
        scaled = np.array(scaled)  # kept: a copy the caller cannot change
        extra = (self.config.stage4,) if stage4 else ()
        cells, maps, mask = film_features(self.backbone, scaled, self.config.features, extra)
        film = FilmFeatures(cells, maps["stage4"] if stage4 else None, scale, scaled, mask)
        with self._lock:
            self._films[identity] = film
            while len(self._films) > KEPT_FILMS:
                self._films.pop(next(iter(self._films)))
        return film

    def _fine(self, film: FilmFeatures) -> CellFeatures:
        """A film's stage-4 cells for the fine head, their breast cells made as `cell_feature_set` makes them, once
        a film."""
        if film.fine is None:
            stride = self.config.stage4.stride
            film.fine = CellFeatures(film.stage4, cell_breast(film.mask, film.stage4.shape[1:], stride), stride)
        return film.fine

    def forget_films(self) -> None:
        """Drop the kept features of the last films (`_film`), so the next screening reads its films afresh."""
        with self._lock:
            self._films.clear()

    def boxes_map(self, film: FilmFeatures, found: np.ndarray) -> np.ndarray:
        """The boxes' tuned map of a film (`found`: its own reading); with the weights' `box_mirrors`, averaged
        with the map read on the film's mirror image (stage 4 only: no breast mask), kept with the film."""
        if not self.config.box_mirrors:
            return found
        if film.boxes is None:
            mirrored = backbone_maps(self.backbone, mirror_pixels(film.scaled), (self.config.stage4,))["stage4"]
            film.boxes = both_ways(found, self.tuned, mirrored)
        return film.boxes

    def iter_screen(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None = None,
                    other: tuple[np.ndarray, tuple[float, float] | None] | None = None):
        """Generator of progress events that returns the image's Screening.

        `other` is the woman's other film (same view: pixels and pixel size) when known. Only
        the mean features of the two breasts and their most suspicious cells are compared, so
        the films need no alignment; `check_partner` refuses one of another size.
        """
        both = other is not None
        summed = [key for key in TUNED_SCORES if key in self.heads.standardise] if both else []
        fine = [FINE_ASYMMETRY] if both and self.heads.fine is not None else []
        film = self._film(pixels, spacing_mm, {TUNED_ASYMMETRY, *summed, *fine})
        cells, (scale_r, scale_c) = film.cells, film.scale
        maps = self._maps(film, {TUNED_ASYMMETRY, *summed})
        mirrored = self.config.box_mirrors and TUNED_ASYMMETRY in maps
        steps, done = 2 + both + mirrored, 1
        yield progress_event("screening", done, steps)
        # the tuned map, where there is one, says where to look
        where = self.boxes_map(film, maps[TUNED_ASYMMETRY]) if TUNED_ASYMMETRY in maps else None
        if mirrored:
            done += 1
            yield progress_event("screening", done, steps)
        partner, partner_maps = None, {}
        if both:
            if np.array_equal(np.asarray(other[0]), np.asarray(pixels)):
                raise OtherFilmError("the other film holds the same pixels as this one; it must be the woman's "
                                     "other breast (or none)")
            try:
                partner_film = self._film(*other, [*summed, *fine])
                partner, partner_maps = partner_film.cells, self._maps(partner_film, summed)
            except ValueError as err:
                raise OtherFilmError(f"the other film: {err}") from None
            done += 1
            yield progress_event("screening", done, steps)
        tuned = {key: (maps[key], partner_maps[key]) for key in summed}
        values, scores = self.heads.film_scores(cells, partner, tuned,
                                                (self._fine(film), self._fine(partner_film)) if fine else None)
        calibration = self.metadata["calibration"]
        if both:
            p_abnormal = logistic(fuse(values, self.heads.standardise), *calibration["both"])
        else:
            p_abnormal = logistic(values["cells"], *calibration["single"])
        severity = self.heads.severity.scores(cells.features)
        p_malignant = self.heads.malignancy(cells, scores, severity)
        probabilities = {"normal": 1 - p_abnormal, "benign": p_abnormal * (1 - p_malignant),
                         "malignant": p_abnormal * p_malignant}
        label = "normal" if p_abnormal < self.threshold(both) else ("malignant" if p_malignant >= 0.5 else "benign")
        patches, label_image, patch_image = self._patches(np.asarray(pixels).shape, smooth_scores(scores), severity,
                                                          cells, (scale_r, scale_c))
        where = scores if where is None else where
        boxes = [((b[0] / scale_r, b[1] / scale_c, b[2] / scale_r, b[3] / scale_c), s)
                 for b, s in cell_boxes(where, cells.breast, cells.stride)]
        yield progress_event("screening", steps, steps)
        heatmap = np.where(cells.breast, where, 0.0).astype(np.float32)  # nothing glows outside the breast
        return Screening(label, probabilities, patches, label_image, patch_image, heatmap,
                         np.array([cells.stride / scale_r, cells.stride / scale_c]), boxes, p_abnormal,
                         self.threshold(both), both)

    def _patches(self, shape: tuple[int, int], scores: np.ndarray, severity: np.ndarray, cells: CellFeatures,
                 scale: np.ndarray) -> tuple[list[dict], np.ndarray, np.ndarray]:
        """128×128 patches (0.2 mm pixels) of the breast, each classed by its most suspicious cell."""
        per = max(1, int(round(128 / cells.stride)))
        threshold_cell = float(self.metadata["cell_threshold"])
        label_image = np.zeros(shape, np.uint8)
        patch_image = np.zeros(shape, np.int32)
        patches = []
        for r0 in range(0, scores.shape[0], per):
            for c0 in range(0, scores.shape[1], per):
                breast = cells.breast[r0:r0 + per, c0:c0 + per]
                if not breast.any():
                    continue
                block = np.where(breast, scores[r0:r0 + per, c0:c0 + per], -1)
                r, c = np.unravel_index(int(np.argmax(block)), block.shape)
                p_abn, p_mal = float(block[r, c]), float(severity[r0 + r, c0 + c])
                probs = {"normal": 1 - p_abn, "benign": p_abn * (1 - p_mal), "malignant": p_abn * p_mal}
                cls = 0 if p_abn < threshold_cell else (2 if p_mal >= 0.5 else 1)
                top, left = int(round(r0 * cells.stride / scale[0])), int(round(c0 * cells.stride / scale[1]))
                bottom = int(round((r0 + per) * cells.stride / scale[0]))
                right = int(round((c0 + per) * cells.stride / scale[1]))
                label_image[top:bottom, left:right] = cls + 1
                patch_image[top:bottom, left:right] = len(patches) + 1
                patches.append({"row": top, "col": left, "label": CLASS_NAMES[cls], "probabilities": probs})
        return patches, label_image, patch_image

    def screen(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None = None, other=None,
               progress: Progress | None = None, stop: StopFlag | None = None) -> Screening:
        """Screen one image (see `iter_screen`)."""
        return run_to_end(self.iter_screen(pixels, spacing_mm, other), progress, stop)

    def screen_file(self, path: str | Path, other: str | Path | None = None, **kwargs) -> Screening:
        """Read an image file (and the woman's other film, when given) and screen it."""
        from napari_mammo.io.images import read_single_image

        second = read_single_image(other) if other is not None else None
        return self.screen_read(read_single_image(path), path, second, other, **kwargs)

    def screen_read(self, image, path: str | Path, second=None, other: str | Path | None = None,
                    **kwargs) -> Screening:
        """Screen an image read from `path` (and the woman's other film read from `other`), refusing an other
        film of another woman, breast side, view or size, and naming the file at fault."""
        partner = None
        if second is not None:
            check_views(image.metadata, second.metadata, other)
            check_partner(image.pixels.shape, image.spacing_mm, second.pixels.shape, second.spacing_mm, other)
            partner = (second.pixels, second.spacing_mm)
        try:
            return self.screen(image.pixels, image.spacing_mm, partner, **kwargs)
        except OtherFilmError as err:
            raise MammoInputError(other, str(err)) from None
        except ValueError as err:
            raise MammoInputError(path, str(err)) from None


def partner_file(path: str | Path) -> Path | None:
    """The woman's other film beside an image, if it is there: mini-MIAS numbering (mdb001 ↔ mdb002, same
    suffix), or for DICOM the same PatientID and ViewPosition with the other ImageLaterality."""
    from napari_mammo.io.images import is_dicom

    path = Path(path)
    partner = partner_of(path.stem)
    other = path.with_name(f"{partner}{path.suffix}") if partner else None
    if other is not None and other.is_file():
        return other
    if is_dicom(path):
        from napari_mammo.io.dicom import dicom_partner

        return dicom_partner(path)
    return None


def check_views(identity: dict, other_identity: dict, other_path: str | Path) -> None:
    """Refuse an other film that the files say is another woman, the same breast, or another view."""
    def known(key: str) -> tuple[str, str] | None:
        mine, theirs = str(identity.get(key, "") or ""), str(other_identity.get(key, "") or "")
        return (mine, theirs) if mine and theirs else None

    if (pair := known("patient")) and pair[0] != pair[1]:
        raise MammoInputError(other_path, f"belongs to patient {pair[1]!r}, this film to {pair[0]!r}")
    if (pair := known("laterality")) and pair[0] == pair[1]:
        raise MammoInputError(other_path, f"is the same breast ({pair[0]}); the other film must be the other one")
    if (pair := known("view")) and pair[0] != pair[1]:
        raise MammoInputError(other_path, f"is a {pair[1]} view and this film {pair[0]}; compare the same view")


def check_partner(shape: tuple, spacing: tuple | None, other_shape: tuple, other_spacing: tuple | None,
                  other_path: str | Path) -> None:
    """Refuse a contralateral film that cannot be the same view of the same woman: another size at 0.2 mm."""
    def physical(s, sp):
        return np.array(s[:2], float) * (np.array(sp, float) if sp else 0.2)

    if len(other_shape) != 2:
        raise MammoInputError(other_path, f"the other film must be a 2-D greyscale image, got shape {other_shape}")
    ratio = physical(other_shape, other_spacing) / physical(shape, spacing)
    if np.any(ratio < 0.75) or np.any(ratio > 1 / 0.75):
        raise MammoInputError(other_path, f"the other film covers {ratio[0]:.2f}x{ratio[1]:.2f} of this film's "
                                          "size; it cannot be the same view of the other breast")
