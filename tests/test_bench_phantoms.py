"""Generated phantoms are not chest films: the bench runs them past the
learned not-a-chest refusal, with the shipped classifier file unchanged."""
import os

from bench.cli import without_chest_gate
from edge.inference.manifest import load_manifest

SHIPPED = os.path.join(os.path.dirname(__file__), "..", "models", "classifier", "classifier.json")


def test_the_phantom_manifest_drops_only_the_refusal_and_keeps_the_shipped_model(tmp_path):
    notes = []
    copy = without_chest_gate(SHIPPED, str(tmp_path), notes)
    shipped, bench = load_manifest(SHIPPED), load_manifest(copy)
    for key in ("ood_max", "layout_max"):
        assert key in shipped.thresholds and key not in bench.thresholds
    assert os.path.samefile(bench.model_path, shipped.model_path) and bench.sha256 == shipped.sha256
    assert bench.output_columns == shipped.output_columns      # the distances are still computed
    assert any("not-a-chest" in n for n in notes)


def test_a_manifest_without_the_gate_is_used_as_it_is(tmp_path):
    copy = without_chest_gate(SHIPPED, str(tmp_path), [])
    assert without_chest_gate(copy, str(tmp_path / "again"), []) == copy


def test_the_config_may_name_the_onnx_file(tmp_path):
    copy = without_chest_gate(SHIPPED[:-5] + ".onnx", str(tmp_path), [])
    assert "ood_max" not in load_manifest(copy).thresholds
