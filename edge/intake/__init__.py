"""Network intake: films pushed to the appliance by DICOM C-STORE.

The receiver writes each instance durably into the capture folder's
incoming/ (edge.capture owns everything after that), so a film received by
C-STORE gets the same ledger, dedupe, crash safety and rejections as one
written to the folder.
"""
