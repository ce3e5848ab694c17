"""Write a model card for shipped weights from their metadata and an `evaluate --json` report.

Usage: python tools/model_card.py WEIGHTS.safetensors EVALUATION.json COMMAND > CARD.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from napari_mammo.engine.weights import load_weights

LICENCE = """## Data licence

Trained on mini-MIAS, which is licensed for research use only (no rent, lease or sale).
Publications using it must cite: J Suckling et al (1994) "The Mammographic Image Analysis
Society Digital Mammogram Database", Excerpta Medica, International Congress Series 1069,
pp 375–378. These weights are for research, not for diagnosis."""


def split_lines(metadata: dict) -> str:
    """The split, by woman and image counts."""
    split = metadata["split"]
    lines = []
    for name in ("train", "val", "test"):
        refs = split.get(name, [])
        women = sorted({r[:-3] + f"{(int(r[-3:]) - 1) // 2 * 2 + 1:03d}" for r in refs})
        lines.append(f"  - {name}: {len(refs)} images of {len(women)} women"
                     + (f": {', '.join(refs)}" if name == "test" else ""))
    return "\n".join(lines)


def _crops(meta: dict) -> str:
    """The lesion crops added to the grid's patches, if any."""
    k = meta["config"].get("crops_per_lesion", 0)
    return f", plus {k} crops around each located lesion (its centre within 32 px of theirs)" if k else ""


def _versus(value: float, target: float) -> str:
    """'at or above' or 'below' a target."""
    return "at or above" if value >= target else "below"


def _row(name: str, level: dict) -> str:
    """One table row of a level's headline numbers."""
    return (f"| {name} | {level['count']} | {level['accuracy']:.3f} | {level['auc_normal_vs_abnormal']:.3f} | "
            f"{level['auc_malignant_vs_rest']:.3f} |")


def classifier_card(meta: dict, report: dict, command: str) -> str:
    """Markdown for CNNI-BCC."""
    image, patches = report["image"], report["patches"]
    rates = "\n".join(f"| {name} | {r['sensitivity']:.3f} | {r['specificity']:.3f} |"
                      for name, r in image["per_class"].items())
    return f"""# Model card: CNNI-BCC (shipped default)

The seed poster's patch classifier (309,731 parameters): 128×128 grey patches → normal /
benign / malignant. ReLU after conv2d_1, depthwise_conv2d_1 and conv2d_2; depthwise_conv2d_2
linear (the poster shows no activations; this is our choice). Input: grey levels / 255,
standardised with mean {meta['input']['mean']} and std {meta['input']['std']}.

## Training

- Data: the mini-MIAS images available here (258 of 322, 129 women).
- Split: seeded ({meta['config']['split_seed']}), stratified by each woman's worst label, both films of a
  woman in the same part; the test part was never used for training or model selection.
{split_lines(meta)}
- Patches: `{meta['config']['patches']}` selection, labels `{meta['config']['labelling']}`{_crops(meta)}; batches
  draw the three classes equally; the seed's augmentation (rotations by 90°, 180°, 270° and a
  vertical flip) at random per patch; Adam, one-cycle learning rate {meta['config']['learning_rate']},
  weight decay {meta['config']['weight_decay']}, batch {meta['config']['batch_size']}, seed {meta['config']['seed']}.
- Kept: epoch {meta['best_epoch']} of {meta['config']['epochs']}, best validation image AUC (normal vs
  abnormal) {meta['val_image_auc_normal_vs_abnormal']:.3f}; image threshold {meta['image_threshold']:.3f}.
- Command: `{command}`

## Results on the test split ({report['images']} images)

Reproduce: `napari-mammo evaluate classifier --data "$NAPARI_MAMMO_MIAS" --split test --json`

| level | n | accuracy | AUC normal vs abnormal | AUC malignant vs rest |
|---|---|---|---|---|
{_row("image", image)}
{_row("patch", patches)}

Image level, one class against the rest:

| class | sensitivity | specificity |
|---|---|---|
{rates}

Image confusion matrix (rows true normal/benign/malignant, columns predicted):
`{image['confusion_matrix']}`

These numbers come from a small test split ({report['images']} images) and are uncertain by
several points. They are not comparable with Ting et al. (2019), who did not split by patient.

Limitation: on this split the image-level accuracy is {_versus(image['accuracy'], 0.75)} the project's target
of 0.75 and the normal-vs-abnormal AUC is {_versus(image['auc_normal_vs_abnormal'], 0.8)} its target of 0.80.
The training women have few located lesions and validation has {len(meta['split']['val'])} images, so
the choice of epoch is itself uncertain; treat the output as a research baseline, not as
a finding.

{LICENCE}
"""


def detector_card(meta: dict, report: dict, command: str) -> str:
    """Markdown for IDBLL."""
    sens = report["sensitivity_at_fp"]
    return f"""# Model card: IDBLL (shipped default)

torchvision's SSD on a small 1-channel backbone (0.85 M parameters), one class `lesion`,
input 512×512 (a mammogram at 0.4 mm pixels), square default boxes of scales 0.03–0.45 of
the image edge chosen from the mini-MIAS lesion sizes.

## Training

- Data: the mini-MIAS images available here (258 of 322, 129 women); boxes from the Info.txt
  circles (centre ± radius); findings without coordinates add no box.
- Split (same rule and seed as CNNI-BCC; test never used for training or selection):
{split_lines(meta)}
- Batches of {meta['config']['batch_size']} images, {meta['config']['lesion_fraction']:.0%} of them drawn from
  images with lesions; the seed's augmentation moving the boxes with the image; AdamW,
  one-cycle learning rate {meta['config']['learning_rate']}, seed {meta['config']['seed']}.
- Kept: epoch {meta['best_epoch']} of {meta['config']['epochs']}, best validation mean lesion sensitivity at
  0.5, 1 and 2 false positives per image ({meta['val_mean_sensitivity']:.3f}; at 1 FP
  {meta['val_sensitivity_at_1fp']:.3f}).
- Command: `{command}`

## Results on the test split ({report['images']} images, {report['lesions']} located lesions)

Reproduce: `napari-mammo evaluate detector --data "$NAPARI_MAMMO_MIAS" --split test --json`

A detection hits a lesion when its box centre lies inside the lesion circle.

| FP per image | 0.5 | 1 | 2 |
|---|---|---|---|
| lesion sensitivity | {sens['0.5']:.3f} | {sens['1']:.3f} | {sens['2']:.3f} |

mAP at IoU 0.5: {report['map_50']:.3f}. With {report['lesions']} test lesions each lesion is
{100 / max(report['lesions'], 1):.0f} points of sensitivity.

{"Limitation: on this split it " + ("reaches" if sens['1'] >= 0.5 else "does not reach")} the project's
target of 0.5 lesion sensitivity at 1 false positive per image.

{LICENCE}
"""


def main() -> None:
    """Print the card."""
    weights, evaluation, command = sys.argv[1], sys.argv[2], sys.argv[3]
    report = json.loads(Path(evaluation).read_text())
    model = "idbll" if "froc" in report else "cnni-bcc"
    _, meta = load_weights(weights, model)
    print(detector_card(meta, report, command) if model == "idbll" else classifier_card(meta, report, command))


if __name__ == "__main__":
    main()
