"""napari-mammo: mammogram classification (CNNI-BCC) and lesion location (IDBLL) for napari."""

from napari_mammo.errors import MammoInputError
from napari_mammo.io.image_data import ImageData
from napari_mammo.io.images import read_image
from napari_mammo.io.mias import read_folder, read_info
from napari_mammo.records import CLASS_NAMES, Lesion, Mammogram

__version__ = "0.1.0"

__all__ = [
    "CLASS_NAMES",
    "ImageData",
    "Lesion",
    "Mammogram",
    "MammoInputError",
    "read_folder",
    "read_image",
    "read_info",
]
