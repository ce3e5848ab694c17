"""Synthetic mammograms: MLO breasts with skin line, pectoral muscle, power-law tissue, masses and calcifications.

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


def _power_law_noise(rng: np.random.Generator, size: int, beta: float = 3.0) -> np.ndarray:
    """Noise in [0, 1] whose power spectrum falls as 1/f^beta, as measured in real breast tissue (beta ≈ 3)."""
    freq_r = np.fft.fftfreq(size)[:, None]
    freq_c = np.fft.rfftfreq(size)[None, :]
    radius = np.sqrt(freq_r**2 + freq_c**2)
    radius[0, 0] = 1.0 / size
    spectrum = np.fft.rfft2(rng.standard_normal((size, size))) * radius ** (-beta / 2)
    field = np.fft.irfft2(spectrum, s=(size, size)).astype(np.float32)
    return (field - field.min()) / (np.ptp(field) + 1e-6)


def _breast(size: int, left: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An MLO breast against the chest wall: its mask, the distance to the skin (0 at the skin, 1 deep
    inside) and the pectoral muscle's mask (a triangle in the upper corner at the chest wall)."""
    from scipy import ndimage

    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    depth = size * rng.uniform(0.5, 0.68)
    half = size * rng.uniform(0.36, 0.44)
    centre = size * rng.uniform(0.52, 0.6)
    wall = cols if left else size - 1 - cols
    # MLO: the breast narrows towards the axilla at the top, where the pectoral muscle is
    top = np.clip((centre - rows) / half, 0, 1)
    shape = np.sqrt((wall / (depth * (1 - 0.35 * top))) ** 2 + (np.abs(rows - centre) / half) ** 2)
    mask = shape < 1
    inside = ndimage.distance_transform_edt(mask).astype(np.float32)
    skin = np.clip(inside / (0.12 * size), 0, 1)
    muscle_width, muscle_height = size * rng.uniform(0.18, 0.3), size * rng.uniform(0.45, 0.7)
    muscle = mask & (wall / muscle_width + rows / muscle_height < 1)
    return mask, skin, muscle


def _mass(rows: np.ndarray, cols: np.ndarray, row: float, col: float, radius: float) -> np.ndarray:
    """A bright, soft-edged round mass."""
    d2 = ((rows - row) ** 2 + (cols - col) ** 2) / (0.6 * radius) ** 2
    return np.exp(-d2)


def _spicules(rows: np.ndarray, cols: np.ndarray, row: float, col: float, radius: float,
              rng: np.random.Generator) -> np.ndarray:
    """Thin bright lines radiating from a mass, fading with distance (a spiculated margin)."""
    out = np.zeros_like(rows)
    for angle in rng.uniform(0, 2 * np.pi, int(rng.integers(10, 18))):
        length = radius * rng.uniform(1.4, 2.6)
        direction = np.array([np.sin(angle), np.cos(angle)])
        along = (rows - row) * direction[0] + (cols - col) * direction[1]
        across = np.abs(-(rows - row) * direction[1] + (cols - col) * direction[0])
        width = max(radius * 0.04, 0.8)
        ridge = np.exp(-(across / width) ** 2) * np.clip(1 - along / length, 0, 1) * (along > 0)
        out = np.maximum(out, ridge)
    return out


def _calcifications(rows: np.ndarray, cols: np.ndarray, row: float, col: float, radius: float, size: int,
                    rng: np.random.Generator) -> np.ndarray:
    """A cluster of tiny, very bright specks (microcalcifications)."""
    out = np.zeros_like(rows)
    speck = max(size / 700, 0.7)
    for _ in range(int(rng.integers(8, 20))):
        offset = rng.uniform(-0.7, 0.7, 2) * radius
        d2 = ((rows - row - offset[0]) ** 2 + (cols - col - offset[1]) ** 2) / (speck * rng.uniform(0.7, 1.6)) ** 2
        out = np.maximum(out, np.exp(-d2))
    return out


def synthetic_mammogram(seed: int = 0, size: int = 1024, label: str | None = None, ref: str = "syn001",
                        kinds: tuple[str, ...] | None = None) -> tuple[np.ndarray, Mammogram]:
    """One synthetic uint8 MLO mammogram in mini-MIAS orientation, and its record.

    It has a skin line, the pectoral muscle in the upper corner at the chest wall, and
    fibroglandular tissue with the power-law (1/f^3) texture of real breasts, densest behind
    the nipple. `label` forces normal/benign/malignant; `kinds` chooses the findings of an
    abnormal image (SPIC or CIRC masses, CALC clusters), one to two at random otherwise.
    """
    rng = np.random.default_rng(seed)
    if label is None:
        label = ("normal", "benign", "malignant")[int(rng.integers(3))]
    number = int("".join(ch for ch in ref if ch.isdigit()) or 1)
    left = number % 2 == 0  # MIAS: even numbers are left breasts
    mask, skin, muscle = _breast(size, left, rng)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    wall = cols if left else size - 1 - cols
    # glandular tissue is densest in the middle of the breast, behind the nipple, and thins to fat at the skin
    density = np.exp(-(((wall / size) - 0.28) / 0.22) ** 2) * skin
    gland = np.clip((_power_law_noise(rng, size) - 0.45) * 3.0, 0, 1) * density
    fine = _power_law_noise(rng, size, beta=1.5)
    image = 0.30 + 0.30 * np.sqrt(skin) + 0.35 * gland + 0.04 * fine
    image = np.where(muscle, 0.78 + 0.08 * fine - 0.1 * rows / size, image)
    from scipy import ndimage

    line = mask & ~ndimage.binary_erosion(mask, iterations=max(1, size // 400), border_value=1)
    image = np.where(line, image + 0.12, image)  # the skin line (not at the image's edge: the chest wall)
    lesions: list[Lesion] = []
    if label != "normal":
        severity = "M" if label == "malignant" else "B"
        if kinds is None:
            count = int(rng.integers(1, 3))
            kinds = tuple(("SPIC" if severity == "M" else "CIRC") if rng.random() < 0.7 else "CALC"
                          for _ in range(count))
        inside = np.argwhere((skin > 0.35) & ~muscle)
        for kind in kinds:
            row, col = inside[rng.integers(len(inside))]
            if kind == "CALC":
                radius = float(rng.uniform(0.015, 0.04) * size)
                image += 0.7 * _calcifications(rows, cols, row, col, radius, size, rng)
            else:
                radius = float(rng.uniform(0.03, 0.07) * size)
                image += 0.30 * _mass(rows, cols, row, col, radius)
                if kind == "SPIC":
                    image += 0.12 * _spicules(rows, cols, row, col, radius, rng)
            lesions.append(Lesion(kind, severity, float(row), float(col), round(radius)))
    image = np.where(mask, image, 0.02 * rng.random((size, size)))
    pixels = np.clip(image * 220, 0, 255).astype(np.uint8)
    tissue = ("F", "G", "D")[int(rng.integers(3))]
    return pixels, Mammogram(ref, tissue, tuple(lesions))


def sample_mammogram() -> tuple[np.ndarray, Mammogram]:
    """The bundled sample (napari's File ▸ Open Sample and the demo): a malignant film with a
    spiculated mass and a microcalcification cluster."""
    return synthetic_mammogram(seed=7, label="malignant", ref="synthetic", kinds=("SPIC", "CALC"))


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
