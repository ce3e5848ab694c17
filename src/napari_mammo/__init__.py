"""napari-mammo: mammogram classification (CNNI-BCC) and lesion location (IDBLL) for napari."""

from .errors import MammoInputError
from .images import ImageData, read_image
from .mias import read_folder, read_info
from .records import CLASS_NAMES, Lesion, Mammogram

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
