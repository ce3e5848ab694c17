import numpy as np
import pytest

from napari_mammo import MammoInputError, read_image
from napari_mammo.io.pgm import read_pgm, write_pgm

GIMP_HEADER = b"P5\n# CREATOR: GIMP PNM Filter Version 1.1\n4 3\n255\n"


def test_reads_gimp_style_pgm_exactly(tmp_path):
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    path = tmp_path / "mdb900.pgm"
    path.write_bytes(GIMP_HEADER + pixels.tobytes())
    out = read_pgm(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, pixels)


def test_round_trip_16_bit(tmp_path):
    pixels = (np.arange(30, dtype=np.uint16).reshape(5, 6) * 2000)
    write_pgm(tmp_path / "a.pgm", pixels)
    out = read_pgm(tmp_path / "a.pgm")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, pixels)


def test_reads_ascii_pgm_of_other_size(tmp_path):
    path = tmp_path / "small.pgm"
    path.write_text("P2\n# comment\n3 2\n15\n0 1 2\n13 14 15\n")
    np.testing.assert_array_equal(read_pgm(path), [[0, 1, 2], [13, 14, 15]])


def test_truncated_pgm_names_the_file(tmp_path):
    path = tmp_path / "mdb001.pgm"
    path.write_bytes(b"P5\n1024 1024\n255\n" + bytes(1000))
    with pytest.raises(MammoInputError, match=r"mdb001\.pgm: truncated: 1000 of 1048576 bytes"):
        read_image(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"P6\n2 2\n255\n" + bytes(12), "not a greyscale PGM"),
        (b"P5\n2 x\n255\n" + bytes(4), "corrupt PGM header"),
        (b"P5\n2", "truncated PGM header"),
        (b"P5\n0 2\n255\n", "corrupt PGM header"),
        (b"P5\n2 2\n100\n" + bytes([0, 1, 2, 200]), "above maxval"),
        (b"", "not a greyscale PGM"),
    ],
)
def test_corrupt_pgm_gives_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.pgm"
    path.write_bytes(content)
    with pytest.raises(MammoInputError, match=message) as info:
        read_pgm(path)
    assert "bad.pgm" in str(info.value)


def test_write_is_atomic_and_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "keep.pgm"
    write_pgm(path, np.ones((2, 2), np.uint8))
    with pytest.raises(ValueError):
        write_pgm(path, np.ones((2, 2, 3), np.uint8))
    np.testing.assert_array_equal(read_pgm(path), np.ones((2, 2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.pgm"]


def test_written_files_are_readable_by_others(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        write_pgm(tmp_path / "shared.pgm", np.zeros((2, 2), np.uint8))
    finally:
        os.umask(old)
    assert (tmp_path / "shared.pgm").stat().st_mode & 0o777 == 0o644
