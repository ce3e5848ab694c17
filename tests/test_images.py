import numpy as np
import pytest
import skimage.io

from napari_mammo import MammoInputError, read_image


def test_grey_png_and_tiff(tmp_path):
    pixels = (np.arange(64 * 48) % 251).astype(np.uint8).reshape(64, 48)
    for name in ("a.png", "a.tif"):
        skimage.io.imsave(tmp_path / name, pixels, check_contrast=False)
        image = read_image(tmp_path / name)
        np.testing.assert_array_equal(image.pixels, pixels)
        assert image.spacing_mm is None


def test_grey_saved_as_rgb_is_accepted(tmp_path):
    grey = np.random.default_rng(0).integers(0, 255, (20, 30), dtype=np.uint8)
    skimage.io.imsave(tmp_path / "rgb.png", np.stack([grey] * 3, axis=-1), check_contrast=False)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png").pixels, grey)


def test_colour_image_is_refused(tmp_path):
    colour = np.zeros((10, 10, 3), np.uint8)
    colour[..., 0] = 200
    skimage.io.imsave(tmp_path / "colour.png", colour, check_contrast=False)
    with pytest.raises(MammoInputError, match=r"colour\.png: is a colour \(RGB\) image"):
        read_image(tmp_path / "colour.png")


def test_corrupt_png_and_unknown_suffix(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(MammoInputError, match="broken.png: cannot be decoded as PNG"):
        read_image(tmp_path / "broken.png")
    (tmp_path / "notes.docx").write_text("x")
    with pytest.raises(MammoInputError, match="unsupported file type .docx"):
        read_image(tmp_path / "notes.docx")
    with pytest.raises(MammoInputError, match="no such file"):
        read_image(tmp_path / "missing.pgm")


def write_dicom(path, pixels, photometric="MONOCHROME2", slope=None, intercept=None, spacing=(0.1, 0.1),
                spacing_keyword="PixelSpacing"):
    """Write a minimal greyscale DICOM file with pydicom."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"  # digital mammography
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if spacing:
        setattr(ds, spacing_keyword, list(spacing))
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_dicom_monochrome2_with_spacing(tmp_path):
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4) * 300
    write_dicom(tmp_path / "mg.dcm", pixels, spacing=(0.07, 0.08))
    image = read_image(tmp_path / "mg.dcm")
    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.spacing_mm == (0.07, 0.08)
    assert image.metadata["format"] == "DICOM"


def test_dicom_monochrome1_is_inverted(tmp_path):
    pixels = np.array([[0, 4095], [1000, 3000]], dtype=np.uint16)
    write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1", spacing_keyword="ImagerPixelSpacing")
    image = read_image(tmp_path / "m1.dcm")
    np.testing.assert_array_equal(image.pixels, 4095 - pixels)
    assert image.spacing_mm == (0.1, 0.1)


def test_dicom_modality_lut_and_no_suffix(tmp_path):
    pixels = np.array([[0, 10], [20, 30]], dtype=np.uint16)
    write_dicom(tmp_path / "IMG0001", pixels, slope=2, intercept=-5, spacing=None)
    image = read_image(tmp_path / "IMG0001")
    np.testing.assert_array_equal(image.pixels, pixels.astype(int) * 2 - 5)
    assert image.spacing_mm is None


def test_corrupt_dicom(tmp_path):
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 10)
    with pytest.raises(MammoInputError, match="bad.dcm"):
        read_image(tmp_path / "bad.dcm")


def test_tiff_colour_stacks_and_corruption(tmp_path):
    import tifffile

    rng = np.random.default_rng(1)
    grey = rng.integers(0, 255, (20, 30), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "grey-rgb.tif", np.stack([grey] * 3, axis=-1), photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "grey-rgb.tif").pixels, grey)
    tifffile.imwrite(tmp_path / "colour.tif", rng.integers(0, 255, (20, 30, 3), dtype=np.uint8), photometric="rgb")
    with pytest.raises(MammoInputError, match=r"colour\.tif: is a colour \(RGB\) image"):
        read_image(tmp_path / "colour.tif")
    pages = rng.integers(0, 255, (3, 20, 30), dtype=np.uint8)  # three grey pages, not three colour planes
    tifffile.imwrite(tmp_path / "pages.tif", pages, photometric="minisblack")
    np.testing.assert_array_equal(read_image(tmp_path / "pages.tif").pixels, pages)
    (tmp_path / "broken.tif").write_bytes(b"II*\x00" + bytes(20))
    with pytest.raises(MammoInputError, match=r"broken\.tif: cannot be decoded as TIF"):
        read_image(tmp_path / "broken.tif")
