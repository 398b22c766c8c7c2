"""The bundled pair run as one joined graph gives the two graphs' findings, and
whatever cannot be joined runs as two graphs, saying why."""
import dataclasses
import os

import pytest

from edge.config import load_config
from edge.errors import ModelError
from edge.inference.backend import JoinedHead
from edge.inference.manifest import load_manifest
from edge.inference.one_graph import joined_bytes
from edge.phantom import chest_phantom
from edge.stages.models import build_pipeline
from edge.types import Image

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _settings(one_graph):
    s = load_config(os.path.join(ROOT, "config", "edge.yaml"))
    return dataclasses.replace(s, models=dataclasses.replace(s.models, one_graph=one_graph))


def test_one_graph_gives_the_two_graphs_findings():
    one, two = build_pipeline(_settings("auto"), threads=1), build_pipeline(_settings("off"), threads=1)
    try:
        assert one.one_graph and one.graphs.startswith("one graph")
        assert not two.one_graph and two.graphs == "two graphs: models.one_graph is off"
        # the joined graph makes the mask: the segmenter keeps its identity but no session
        assert isinstance(one.segmenter, JoinedHead) and not hasattr(one.segmenter, "session")
        assert [m.backend for m in one.models] == [m.backend for m in two.models]
        assert [m.sha256 for m in one.models] == [m.sha256 for m in two.models]
        with pytest.raises(ModelError, match="inside the joined graph"):
            one.segmenter.run(None)
        for seed in range(3):
            image = Image(pixels=chest_phantom(420, 400, seed=seed), source_format="png")
            # phantoms are not chests to the gate: its limits lifted, the models' outputs compared
            th = dataclasses.replace(one.thresholds, ood_max=1e9, layout_max=1e9)
            a, b = one.run(image, th), two.run(image, th)
            assert a.finding.pneumothorax == b.finding.pneumothorax
            assert a.finding.probability == pytest.approx(b.finding.probability, abs=1e-5)
            assert a.finding.area_fraction == pytest.approx(b.finding.area_fraction, abs=1e-4)
            assert a.timings_ms["segment_ms"] == 0.0 and b.timings_ms["segment_ms"] > 0.0
    finally:
        one.close()
        two.close()


def test_models_whose_preprocessing_differs_are_not_joined():
    cls = load_manifest(os.path.join(ROOT, "models", "classifier", "classifier.json"))
    seg = load_manifest(os.path.join(ROOT, "models", "segmenter", "segmenter.json"))
    other = dataclasses.replace(seg, preprocessing=dataclasses.replace(seg.preprocessing, size=[384, 384]))
    joined, why = joined_bytes(cls, other)
    assert joined is None and why == "two graphs: the two models' preprocessing differs"
    joined, why = joined_bytes(cls, seg)
    assert joined is not None and why.startswith("one graph")
