"""The naive baseline builds, for each shipped model, the eager network with
the ONNX graph's FLOPs: the bundled pair's own, like for like."""
import os

import pytest

from edge.inference.manifest import load_manifest

ROOT = os.path.join(os.path.dirname(__file__), "..")


@pytest.mark.parametrize("role", ["classifier", "segmenter"])
def test_the_baseline_builds_a_network_for_each_shipped_model(role):
    pytest.importorskip("torch")
    pytest.importorskip("segmentation_models_pytorch")
    from bench.baseline import LIKE_FOR_LIKE, matching_net
    from bench.flops import onnx_flops
    manifest = load_manifest(os.path.join(ROOT, "models", role, role + ".json"))
    flops = sum(onnx_flops(manifest.model_path).values())
    net, info = matching_net(manifest, flops)
    assert net is not None and info["onnx_flops"] == flops and info["torch_flops"] > 0
    assert info["like_for_like"] == (info["flops_gap"] <= LIKE_FOR_LIKE)
    assert info["like_for_like"], info          # the bundled Lite0 pair, not a config's MobileNetV2 / B0
