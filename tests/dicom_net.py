"""The cart's side of DICOM networking for the tests: a pynetdicom SCU that
sends films (made at test time) by C-STORE, and dcmtk's storescu/echoscu."""
import os
from typing import List, Optional, Sequence

from pynetdicom import AE

from tests.dicom_factory import DX_SOP_CLASS, write_dicom
from tests.test_appliance import radiograph_pixels

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
RLE = "1.2.840.10008.1.2.5"
VERIFICATION = "1.2.840.10008.1.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def make_film(path: str, seed: int, positive: bool, size=(600, 500), **kw) -> str:
    """A DX film like tests/test_appliance.drop_dicom's, written where asked."""
    kw.setdefault("sop_instance_uid", "1.2.826.0.1.3680043.8.498.%d" % (seed + 1))
    return write_dicom(path, radiograph_pixels(seed, positive, *size), bits_stored=12,
                       window=(2048, 4096), **kw)


def associate(port: int, calling: str = "CART1", called: str = "PNEUMO_EDGE",
              contexts: Sequence = ((DX_SOP_CLASS, (EXPLICIT_LE, IMPLICIT_LE)), (DX_SOP_CLASS, (RLE,)),
                                    (VERIFICATION, (EXPLICIT_LE,)))):
    """One presentation context per entry (the SCP accepts one transfer syntax per context)."""
    ae = AE(ae_title=calling)
    for sop_class, syntaxes in contexts:
        ae.add_requested_context(sop_class, list(syntaxes))
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    return ae.associate("127.0.0.1", port, ae_title=called)


def send_files(port: int, paths: Sequence[str], calling: str = "CART1") -> List[Optional[int]]:
    """C-STORE each file over one association; the statuses (None: no response)."""
    assoc = associate(port, calling)
    if not assoc.is_established:
        raise AssertionError("association refused")
    try:
        out = []
        for path in paths:
            rsp = assoc.send_c_store(path)
            out.append(int(rsp.Status) if rsp is not None and "Status" in rsp else None)
        return out
    finally:
        assoc.release()


def dcmtk(tool: str) -> Optional[str]:
    """DCMTK's binary (pynetdicom 3 installs Python apps of the same names in the venv)."""
    for folder in ("/usr/bin", "/usr/local/bin"):
        path = os.path.join(folder, tool)
        if os.access(path, os.X_OK):
            return path
    return None
