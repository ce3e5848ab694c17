"""Hostile inputs through the command line, under a memory limit so a blow-up fails the test, not the machine."""

import resource
import subprocess
import sys

import numpy as np
import pytest

LIMIT = 12 * 2**30
"""Address space for the command: torch's libraries map a few GB; a blown-up image asks for far more."""


def _run_limited(*args: str) -> subprocess.CompletedProcess:
    """`napari-mammo ARGS` in a child process whose address space is capped at LIMIT."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))

    return subprocess.run([sys.executable, "-m", "napari_mammo", *args], capture_output=True, text=True,
                          timeout=300, preexec_fn=cap)


def _one_clean_line(result: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2 with one line on stderr naming the problem, and no traceback."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and all(w in lines[0] for w in words), result.stderr


def test_a_thin_strip_is_refused_before_it_is_padded_square(tmp_path):
    path = tmp_path / "strip.pgm"
    path.write_bytes(b"P5\n100000 1\n255\n" + np.random.default_rng(0).integers(0, 255, 100000, np.uint8).tobytes())
    for command in ("detect", "classify"):
        _one_clean_line(_run_limited(command, str(path)), "strip.pgm", "at least 128")


def test_a_huge_declared_size_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.pgm"
    path.write_bytes(b"P5\n100000 100000\n255\n" + bytes(1000))
    _one_clean_line(_run_limited("info", str(path)), "huge.pgm", "limit")


def test_a_pixel_size_that_would_blow_the_image_up_is_refused():
    from napari_mammo.data.preprocess import to_mias_scale

    with pytest.raises(ValueError, match="above the limit"):
        to_mias_scale(np.zeros((256, 256), np.float32), (1000.0, 1000.0))


def test_a_tiny_image_gets_no_verdict(tmp_path):
    from napari_mammo.io.pgm import write_pgm

    path = tmp_path / "tiny.pgm"
    write_pgm(path, np.array([[0, 255]], np.uint8))
    _one_clean_line(_run_limited("classify", "--model", "cnni-bcc", str(path)), "tiny.pgm", "at least 128")


def test_weights_with_nan_are_neither_written_nor_loaded(tmp_path, classifier_file):
    import torch

    from napari_mammo import MammoInputError
    from napari_mammo.engine.weights import load_weights, save_weights
    from napari_mammo.models.cnni_bcc.predict import PatchClassifier

    state, metadata = load_weights(classifier_file, "cnni-bcc")
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = torch.full_like(state[name], float("nan"))
    with pytest.raises(ValueError, match="NaN or infinite"):
        save_weights(tmp_path / "nan.safetensors", state, "cnni-bcc", {})
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "nan.safetensors"), metadata={"model": "cnni-bcc"})  # written by someone else
    with pytest.raises(MammoInputError, match="NaN or infinite"):
        PatchClassifier.load(tmp_path / "nan.safetensors")


def test_a_loss_that_goes_non_finite_stops_training():
    import torch

    from napari_mammo.training.loop import optimise

    weight = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.SGD([weight], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1.0)
    with pytest.raises(ValueError, match="became nan"):
        optimise(weight.sum() * float("nan"), optimiser, scheduler)
    assert weight.item() == 0.0  # the step was not taken


def test_a_batch_goes_on_past_a_bad_file_and_streams_json_lines(synthetic_folder, tmp_path, capsys):
    import json

    from napari_mammo.cli import main

    bad = tmp_path / "bad.pgm"
    bad.write_bytes(b"P5\n10 10\n255\n")  # truncated
    good = str(synthetic_folder / "mdb001.pgm")
    assert main(["classify", "--model", "cnni-bcc", good, str(bad), good, "--jsonl"]) == 2
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [entry["path"] for entry in lines] == [good, good]
    assert err.count("error") == 1 and "bad.pgm" in err


def test_debug_shows_the_traceback(tmp_path):
    from napari_mammo.cli import main

    with pytest.raises(Exception, match="missing.pgm"):
        main(["--debug", "info", str(tmp_path / "missing.pgm")])
    assert main(["info", str(tmp_path / "missing.pgm")]) == 2


def _save_many(folder: str, first: int, count: int) -> None:
    """Write `count` small images with one lesion each into a MIAS folder, one merge at a time."""
    from pathlib import Path

    from napari_mammo import Lesion, Mammogram
    from napari_mammo.io.mias import merge_into_info
    from napari_mammo.io.pgm import write_pgm

    for number in range(first, first + count):
        ref = f"mdb{number:03d}"
        path = Path(folder) / f"{ref}.pgm"
        write_pgm(path, np.full((16, 16), number % 250, np.uint8))
        merge_into_info(folder, [Mammogram(ref, "F", (Lesion("CIRC", "B", 8.0, 8.0, 3.0),), path)], {ref: 16})


def test_two_processes_saving_into_one_folder_keep_every_row(tmp_path):
    import multiprocessing

    from napari_mammo import read_folder

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_save_many, args=(str(tmp_path), first, 40)) for first in (1, 101)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
        assert worker.exitcode == 0
    refs = sorted(r.ref for r in read_folder(tmp_path))
    assert refs == [f"mdb{n:03d}" for n in (*range(1, 41), *range(101, 141))]


def test_train_checks_its_output_before_any_work(tmp_path, capsys):
    from napari_mammo.cli import main

    kept = tmp_path / "kept.safetensors"
    kept.write_bytes(b"the researcher's weights")
    folder = tmp_path / "no-such-folder"  # never read: the output is refused first
    assert main(["train", "classifier", "--data", str(folder), "--out", str(kept)]) == 2
    assert "--overwrite" in capsys.readouterr().err and kept.read_bytes() == b"the researcher's weights"
    assert main(["train", "detector", "--data", str(folder), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    assert main(["train", "classifier", "--data", str(folder), "--out", str(blocked / "w.safetensors")]) == 2
    assert "cannot be written" in capsys.readouterr().err


def test_an_ascii_pgm_value_beyond_any_integer_is_one_line(tmp_path, capsys):
    from napari_mammo.cli import main

    path = tmp_path / "huge-value.pgm"
    path.write_text("P2\n2 1\n255\n1 " + "9" * 26 + "\n")
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "huge-value.pgm" in err and "maxval" in err


def _dicom(path, rows: int, columns: int, pixel_data: bytes, deflated: bool = False) -> None:
    """A 16-bit greyscale DICOM whose header declares rows x columns, whatever its pixel data holds."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian if deflated else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns, ds.SamplesPerPixel = "MG", rows, columns, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PhotometricInterpretation, ds.PixelData = "MONOCHROME2", pixel_data
    ds.save_as(path, enforce_file_format=True)


def test_declared_sizes_of_dicom_tiff_and_png_are_checked_before_decoding(tmp_path, monkeypatch):
    import struct
    import zlib

    import tifffile

    _dicom(tmp_path / "huge.dcm", 60000, 60000, bytes(512))
    _one_clean_line(_run_limited("info", str(tmp_path / "huge.dcm")), "huge.dcm", "60000x60000", "limit")
    # a PNG header declaring 60000 x 60000 over a few bytes of data
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(bytes(1000)))
                                        + chunk(b"IEND", b""))
    _one_clean_line(_run_limited("info", str(tmp_path / "huge.png")), "huge.png", "60000x60000", "limit")
    # a tiled TIFF above a lowered budget (a 60000² one is 3.4 GB even empty; refused the same way)
    tifffile.imwrite(tmp_path / "tiled.tif", np.zeros((512, 512), np.uint8), tile=(256, 256))
    monkeypatch.setenv("NAPARI_MAMMO_MAX_PIXELS", "100000")
    _one_clean_line(_run_limited("classify", str(tmp_path / "tiled.tif")), "tiled.tif", "512x512", "limit")


def test_a_deflated_dicom_is_not_inflated_past_the_budget(tmp_path, monkeypatch):
    # 80 MB of pixel data deflates to about 80 kB; its header claims an innocent 256 x 256
    _dicom(tmp_path / "bomb.dcm", 256, 256, bytes(80 << 20), deflated=True)
    assert (tmp_path / "bomb.dcm").stat().st_size < 200_000
    monkeypatch.setenv("NAPARI_MAMMO_MAX_PIXELS", "100000")
    _one_clean_line(_run_limited("info", str(tmp_path / "bomb.dcm")), "bomb.dcm", "deflated", "inflates")


def test_layer_text_cannot_break_or_inject_info_rows_and_csv_keeps_any_text(tmp_path):
    from napari_mammo.io.mias import read_csv
    from napari_mammo.plugin.writer import write_lesions

    box = np.array([[10.0, 10.0], [10.0, 30.0], [30.0, 30.0], [30.0, 10.0]])
    injected = {"ref": ["mdb001\r\nmdb999 F NORM"], "class": ["CIRC"], "severity": ["B"], "tissue": ["F"]}
    foreign = {"ref": ["mdb001"], "class": ["CIRC"], "severity": ["B"], "tissue": ["脂肪"]}
    for features, word in ((injected, "reference"), (foreign, "tissue")):
        with pytest.raises(ValueError, match=f"the {word} .* cannot be written into Info.txt"):
            write_lesions(str(tmp_path / "Info.txt"), [box], {"name": "x lesions", "features": features})
        assert not (tmp_path / "Info.txt").exists()  # nothing half-written
        write_lesions(str(tmp_path / "l.csv"), [box], {"name": "x lesions", "features": features})
        (record,) = read_csv(tmp_path / "l.csv")
        assert (record.ref, record.tissue) == (features["ref"][0], features["tissue"][0])
    # a layer named " lesions" (no image name) or with a non-Latin name falls back to img001
    for name in (" lesions", "乳房 lesions"):
        write_lesions(str(tmp_path / "Info.txt"), [box], {"name": name})
        assert (tmp_path / "Info.txt").read_text(encoding="latin-1").splitlines()[1].startswith("img001 ")


def test_an_unreadable_pgm_is_one_line_naming_it(tmp_path, monkeypatch):
    from pathlib import Path

    from napari_mammo import MammoInputError
    from napari_mammo.io.pgm import pgm_shape, read_pgm, write_pgm

    path = tmp_path / "mdb001.pgm"
    write_pgm(path, np.zeros((4, 4), np.uint8))

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", denied)
    monkeypatch.setattr(Path, "read_bytes", denied)
    for read in (pgm_shape, read_pgm):
        with pytest.raises(MammoInputError, match="mdb001.pgm.*Permission denied"):
            read(path)
