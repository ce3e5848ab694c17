"""Synthetic mammograms: breast-shaped tissue with masses and calcification clusters.

They stand in for mini-MIAS in tests and as napari sample data. Their findings are
ordinary `Mammogram` records and can be written out in the MIAS layout (PGM + Info.txt),
so every code path that reads real data can run on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_mammo.io.mias import INFO_NAME, write_info
from napari_mammo.io.pgm import write_pgm
from napari_mammo.records import Lesion, Mammogram

SYNTHETIC_HEADER = "Synthetic mammograms made by napari-mammo (not patient data).\n"


def _tissue(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth random texture in [0, 1], like fibroglandular tissue."""
    from scipy import ndimage

    noise = rng.standard_normal((size, size)).astype(np.float32)
    coarse = ndimage.gaussian_filter(noise, size / 40)
    fine = ndimage.gaussian_filter(noise, size / 300)
    texture = coarse / (coarse.std() + 1e-6) + 0.4 * fine / (fine.std() + 1e-6)
    return (texture - texture.min()) / (np.ptp(texture) + 1e-6)


def _breast(size: int, left: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Breast mask (a half ellipse against the chest wall) and distance-to-skin falloff."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    depth = size * rng.uniform(0.55, 0.75)
    half = size * rng.uniform(0.38, 0.46)
    wall = cols if left else size - 1 - cols
    r = np.sqrt((wall / depth) ** 2 + ((rows - size / 2) / half) ** 2)
    mask = r < 1
    return mask, np.clip(1 - r, 0, 1)


def _mass(rows: np.ndarray, cols: np.ndarray, row: float, col: float, radius: float) -> np.ndarray:
    """A bright, soft-edged round mass."""
    d2 = ((rows - row) ** 2 + (cols - col) ** 2) / (0.6 * radius) ** 2
    return np.exp(-d2)


def synthetic_mammogram(seed: int = 0, size: int = 1024, label: str | None = None,
                        ref: str = "syn001") -> tuple[np.ndarray, Mammogram]:
    """One synthetic uint8 mammogram and its record; `label` forces normal/benign/malignant."""
    rng = np.random.default_rng(seed)
    if label is None:
        label = ("normal", "benign", "malignant")[int(rng.integers(3))]
    number = int("".join(ch for ch in ref if ch.isdigit()) or 1)
    left = number % 2 == 0  # MIAS: even numbers are left breasts
    mask, falloff = _breast(size, left, rng)
    image = 0.35 + 0.25 * _tissue(rng, size) + 0.25 * np.sqrt(falloff)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    lesions: list[Lesion] = []
    if label != "normal":
        severity = "M" if label == "malignant" else "B"
        inside = np.argwhere(falloff > 0.3)
        for _ in range(int(rng.integers(1, 3))):
            row, col = inside[rng.integers(len(inside))]
            if rng.random() < 0.7:
                radius = float(rng.uniform(0.02, 0.06) * size)
                image += 0.45 * _mass(rows, cols, row, col, radius)
                abnormality = "SPIC" if severity == "M" else "CIRC"
            else:
                radius = float(rng.uniform(0.015, 0.04) * size)
                for _ in range(int(rng.integers(6, 15))):
                    offset = rng.uniform(-0.7, 0.7, 2) * radius
                    image += 0.6 * _mass(rows, cols, row + offset[0], col + offset[1], max(size / 300, 1.5))
                abnormality = "CALC"
            lesions.append(Lesion(abnormality, severity, float(row), float(col), round(radius)))
    image = np.where(mask, image, 0.02 * rng.random((size, size)))
    pixels = np.clip(image * 200, 0, 255).astype(np.uint8)
    tissue = ("F", "G", "D")[int(rng.integers(3))]
    return pixels, Mammogram(ref, tissue, tuple(lesions))


def write_synthetic_dataset(folder: str | Path, women: int = 4, size: int = 1024,
                            seed: int = 0) -> list[Mammogram]:
    """Write `women`×2 synthetic mammograms (mdb001.pgm …) and their Info.txt into a folder.

    Labels cycle normal, benign, malignant over the women so every class is present.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(2 * women):
        ref = f"mdb{i + 1:03d}"
        label = ("normal", "benign", "malignant")[(i // 2) % 3] if i % 2 == 0 else "normal"
        pixels, record = synthetic_mammogram(seed * 1000 + i, size, label, ref)
        path = folder / f"{ref}.pgm"
        write_pgm(path, pixels, comment="napari-mammo synthetic mammogram")
        records.append(Mammogram(record.ref, record.tissue, record.lesions, path))
    write_info(folder / INFO_NAME, records, height=size, header=SYNTHETIC_HEADER, overwrite=True)
    return records
