import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from napari_mammo import Lesion, Mammogram, MammoInputError, read_folder, read_info
from napari_mammo.io.mias import format_info, parse_info, record_for_image
from napari_mammo.io.pgm import write_pgm

ODD_INFO = (
    "              MAMMOGRAPHIC IMAGE ANALYSIS SOCIETY\r\n"
    "1st column: MIAS database reference number.\r\n"
    "3rd column: Class of abnormality present:\r\n"
    "                CALC - Calcification\r\n"
    "mdb001 G CIRC B 535 425 197\r\n"
    "mdb002 G CIRC B 522 280 69 \r\n"
    "mdb003 D NORM \r\n"
    "mdb005 F CIRC B 477 133 30\r\n"
    "mdb005 F CIRC B 500 168 26\r\n"
    "mdb059 F CIRC B\r\n"
    "mdb144 F MISC B 233 994 29\r\n"
    "mdb144 F MISC M 313 540 27\r\n"
    "mdb233 G CALC M *NOTE 3*\r\n"
)


def test_parses_odd_rows():
    records = {r.ref: r for r in parse_info(ODD_INFO)}
    assert list(records) == ["mdb001", "mdb002", "mdb003", "mdb005", "mdb059", "mdb144", "mdb233"]
    assert records["mdb001"].lesions == (Lesion("CIRC", "B", row=1024 - 425, col=535, radius=197),)
    assert records["mdb003"].label == "normal" and records["mdb003"].lesions == ()
    assert len(records["mdb005"].lesions) == 2
    assert records["mdb059"].lesions == (Lesion("CIRC", "B"),)
    assert not records["mdb059"].lesions[0].located
    assert records["mdb144"].label == "malignant"
    assert records["mdb233"].lesions[0].severity == "M" and not records["mdb233"].lesions[0].located
    assert records["mdb002"].woman == records["mdb001"].woman == "mdb001"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("mdb010 F CIRQ B 1 2 3", "class 'CIRQ'"),
        ("mdb010 F CIRC X 1 2 3", "severity must be B or M"),
        ("mdb010 F CIRC B 1 2", "expected X Y RADIUS"),
        ("mdb010 F CIRC B 1 two 3", "must be numbers"),
        ("mdb010 F NORM B", "NORM row"),
        ("mdb010 F CIRC B 1 2 -3", "radius must be positive"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    path = tmp_path / "Info.txt"
    path.write_text("header\r\n" + row + "\r\n")
    with pytest.raises(MammoInputError, match=message) as info:
        read_info(path)
    assert str(path) in str(info.value) and "line 2" in str(info.value)


def test_empty_info_is_refused(tmp_path):
    path = tmp_path / "Info.txt"
    path.write_text("nothing here\n")
    with pytest.raises(MammoInputError, match="no rows"):
        read_info(path)


def test_folder_skips_missing_images_with_one_warning(tmp_path):
    (tmp_path / "Info.txt").write_text("mdb001 G NORM\nmdb002 G NORM\nmdb003 F NORM\n")
    write_pgm(tmp_path / "mdb002.pgm", __import__("numpy").zeros((4, 4), "uint8"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = read_folder(tmp_path)
    assert [r.ref for r in records] == ["mdb002"]
    assert len(caught) == 1 and "2 listed image(s) not found" in str(caught[0].message)
    assert record_for_image(tmp_path / "mdb002.pgm").ref == "mdb002"
    assert record_for_image(tmp_path / "mdb777.pgm") is None


def test_folder_without_info_is_refused(tmp_path):
    with pytest.raises(MammoInputError, match="no Info.txt"):
        read_folder(tmp_path)


def test_write_refuses_to_overwrite(tmp_path):
    from napari_mammo.io.mias import write_info

    path = tmp_path / "Info.txt"
    path.write_text("precious")
    with pytest.raises(MammoInputError, match="already exists"):
        write_info(path, [Mammogram("mdb001", "F")])
    assert path.read_text() == "precious"


coordinate = st.integers(min_value=0, max_value=1024)
lesions = st.builds(
    Lesion,
    abnormality=st.sampled_from(["CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM"]),
    severity=st.sampled_from(["B", "M"]),
    row=coordinate.map(float),
    col=coordinate.map(float),
    radius=st.integers(min_value=1, max_value=400).map(float),
)
records_strategy = st.lists(
    st.builds(
        Mammogram,
        ref=st.integers(min_value=1, max_value=999).map(lambda n: f"mdb{n:03d}"),
        tissue=st.sampled_from(["F", "G", "D"]),
        lesions=st.lists(st.one_of(lesions, st.builds(Lesion, st.just("CALC"), st.sampled_from("BM"))),
                         max_size=3).map(tuple),
    ),
    max_size=8,
    unique_by=lambda r: r.ref,
)


@given(records_strategy, st.sampled_from(["\r\n", "\n"]), st.text(" ", max_size=3))
def test_format_then_parse_round_trips(records, newline, trailing):
    text = format_info(records).replace("\r\n", trailing + newline)
    assert parse_info(text) == records


def test_broken_info_beside_an_image_is_a_warning(tmp_path):
    import numpy as np

    write_pgm(tmp_path / "mdb001.pgm", np.zeros((4, 4), np.uint8))
    (tmp_path / "Info.txt").write_text("mdb001 G CIRC B 535 425\n")
    with pytest.warns(UserWarning, match=r"Info.txt: line 1: expected X Y RADIUS .* read without its lesions"):
        assert record_for_image(tmp_path / "mdb001.pgm") is None


def test_info_with_a_byte_order_mark_keeps_its_first_row():
    from napari_mammo.io.mias import parse_info

    for bom in ("\ufeff", "ï»¿"):  # as text, and as UTF-8 bytes read as Latin-1
        (record,) = parse_info(bom + "mdb001 G CIRC B 535 425 197\r\n")
        assert record.ref == "mdb001" and record.lesions[0].radius == 197


@pytest.mark.parametrize("row, problem", [("mdb001 G CIRC B 535 425 197\x00", "NUL"),
                                          ("mdb001 G CIRC B inf 425 197", "finite"),
                                          ("mdb001 G CIRC B 535 nan 197", "finite")])
def test_info_refuses_damaged_rows_with_their_line(row, problem):
    from napari_mammo.io.mias import parse_info

    with pytest.raises(ValueError, match=f"line 2: .*{problem}"):
        parse_info("header\n" + row + "\n")


def test_many_rows_for_one_image_are_all_kept():
    from napari_mammo.io.mias import parse_info

    rows = "".join(f"mdb001 G CALC B {100 + i % 500} {200 + i % 300} 5\n" for i in range(20000))
    (record,) = parse_info(rows)
    assert len(record.lesions) == 20000
