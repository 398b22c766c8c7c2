"""Real Alerts (schema.build_alert from a Result) for tests that need one
with a chosen id or verdict."""
from dataclasses import replace
from typing import Optional

import numpy as np

from edge.alerts.messages import Alert
from edge.alerts.schema import build_alert
from edge.types import Finding, Image, ModelInfo, Result


def make_alert(alert_id: Optional[str] = None, positive: bool = True,
               file_name: str = "img1.dcm") -> Alert:
    """A positive (or negative) alert for a 400x300 DX film; `alert_id`
    replaces the deterministic id when a test needs a known one."""
    finding = (Finding(pneumothorax=True, probability=0.93, seg_max_probability=0.97, area_px=5200,
                       area_fraction=0.0127, area_cm2=6.24, side="right", bbox=(40, 60, 80, 100),
                       contours=[[(40, 60), (120, 60), (120, 160), (40, 160)]],
                       reasons=["segmenter"], classifier_probability=0.88)
               if positive else
               Finding(pneumothorax=False, probability=0.02, seg_max_probability=0.1, area_px=0,
                       area_fraction=0.0, area_cm2=0.0, side=None, bbox=None,
                       classifier_probability=0.02))
    models = [ModelInfo(name, "1.0", "cd" * 32, task, "fp32", "onnxruntime", "demo")
              for name, task in (("classifier", "classification"), ("segmenter", "segmentation"))]
    result = Result(finding=finding, models=models, timings_ms={"decode_ms": 12.3},
                    thresholds={"pixel_high": 0.75, "min_area_fraction": 0.001})
    image = Image(pixels=np.zeros((400, 300), np.float32), source_format="dicom", modality="DX",
                  sop_instance_uid="1.2.3.%d" % (sum(map(ord, file_name)) % 9973))
    alert = build_alert(result, image, file_name=file_name, file_sha256="ab" * 32,
                        site="ward-3", device="cart-1")
    return replace(alert, alert_id=alert_id) if alert_id else alert
