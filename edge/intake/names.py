"""The SOP classes and transfer syntaxes the C-STORE receiver can accept, by
the short names used in the config (intake.dicom.sop_classes / transfer_syntaxes)."""
from typing import Dict, List, Tuple

SOP_CLASSES = {
    "cr": ("1.2.840.10008.5.1.4.1.1.1",),                      # Computed Radiography
    "dx_presentation": ("1.2.840.10008.5.1.4.1.1.1.1",),       # Digital X-Ray, for presentation
    "dx_processing": ("1.2.840.10008.5.1.4.1.1.1.1.1",),       # Digital X-Ray, for processing
    "secondary_capture": ("1.2.840.10008.5.1.4.1.1.7",),       # Secondary Capture (scanned films)
}  # type: Dict[str, Tuple[str, ...]]

TRANSFER_SYNTAXES = {
    "explicit_le": ("1.2.840.10008.1.2.1",),
    "implicit_le": ("1.2.840.10008.1.2",),
    "jpeg_baseline": ("1.2.840.10008.1.2.4.50",),
    "jpeg_lossless": ("1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.57"),   # SV1, process 14
    "jpeg2000": ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"),        # lossless, lossy
    "jpeg_ls": ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"),
    "rle": ("1.2.840.10008.1.2.5",),
}  # type: Dict[str, Tuple[str, ...]]

# Uncompressed syntaxes: the pixel data's length can be checked against its geometry.
NATIVE = frozenset(["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"])


def expand(names: List[str], table: Dict[str, Tuple[str, ...]]) -> List[str]:
    """UIDs for config names, in order, without repeats (KeyError on an unknown name)."""
    out = []  # type: List[str]
    for name in names:
        for uid in table[name]:
            if uid not in out:
                out.append(uid)
    return out
