"""Training, evaluation and ONNX export of pneumo-edge's two models.

Needs the `models` extra (torch, torchvision, segmentation-models-pytorch).
The runtime (`edge`) never imports this package.

Nothing here may fetch weights: the hubs are forced offline before torch,
timm or huggingface_hub are imported, and every network is built with
`weights=None` / `encoder_weights=None`.
"""
import os

for _key, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                     ("HF_DATASETS_OFFLINE", "1"), ("TIMM_USE_HF_HUB", "0")):
    os.environ.setdefault(_key, _value)
