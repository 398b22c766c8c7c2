"""The one frame of an encapsulated (compressed) DICOM Pixel Data element."""
from typing import Any


def single_frame(ds: Any) -> bytes:
    """The first frame's codestream (JPEG, JPEG 2000 ...), pydicom 2.4 or 3."""
    try:
        from pydicom.encaps import generate_frames              # pydicom 3
        return next(generate_frames(ds.PixelData, number_of_frames=1))
    except ImportError:
        from pydicom.encaps import generate_pixel_data_frame     # pydicom 2.4
        return next(generate_pixel_data_frame(ds.PixelData, 1))
