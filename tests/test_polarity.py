"""A film whose grey scale is the wrong way round is refused with its own
reason code before the models read it (attack campaign, session 9: a
mislabelled MONOCHROME1 film passed the not-a-chest gate and a positive read
p 0.31 instead of 0.81). edge/polarity.py, models/polarity.py."""
import dataclasses
import glob
import os

import numpy as np
import pydicom
import pytest

from edge.config import load_config
from edge.decode import decode_file
from edge.errors import InvertedGreyscale
from edge.gate import LEARNED_LIMITS, check_polarity
from edge.phantom import chest_phantom
from edge.polarity import correlation
from edge.stages.models import build_pipeline
from tests.dicom_factory import write_dicom

ROOT = os.path.join(os.path.dirname(__file__), "..")
DATA = os.path.join(ROOT, "..", "shared", "data")


def test_the_check_refuses_below_its_limit_and_is_off_without_one():
    check_polarity(0.3, 0.0)
    check_polarity(-0.9, None)                                  # models without the limit: no check
    for bad in (-0.01, float("nan")):
        with pytest.raises(InvertedGreyscale) as exc:
            check_polarity(bad, 0.0)
        assert exc.value.code == "inverted_greyscale"
    assert "polarity_min" in LEARNED_LIMITS                     # lifted for generated phantoms, as the gate is


def test_a_chest_layout_correlates_positively_and_its_inverse_negatively():
    x = chest_phantom(600, 500, seed=1)[None, None].astype(np.float32)
    assert correlation(x) > 0.5 and correlation(1 - x) < -0.5
    assert correlation(np.full((1, 1, 64, 64), 0.4, np.float32)) == 0.0     # no layout: no verdict
    three = np.repeat(x, 3, axis=1)                                         # a 3-channel input, a batch of 2
    assert correlation(three) == correlation(np.concatenate([x, 1 - x])) == correlation(x)


@pytest.fixture(scope="module")
def pipeline():
    s = load_config(os.path.join(ROOT, "config", "edge.yaml"))
    p = build_pipeline(s, threads=1, announce=False)
    yield p
    p.close()


def test_a_mislabelled_monochrome1_film_is_refused_before_the_models(pipeline, tmp_path):
    px = (chest_phantom(600, 500, seed=2) * 4095).astype(np.uint16)
    path = write_dicom(str(tmp_path / "right.dcm"), px, photometric="MONOCHROME2")
    right = decode_file(path)
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "MONOCHROME1"               # the same stored values, mislabelled
    ds.save_as(str(tmp_path / "wrong.dcm"))
    wrong = decode_file(str(tmp_path / "wrong.dcm"))
    # phantoms are not chests to the learned feature gate: its distance limits lifted, the polarity kept
    th = dataclasses.replace(pipeline.thresholds, ood_max=1e9, layout_max=1e9)
    assert th.polarity_min == 0.0                               # the bundled classifier's manifest
    pipeline.run(right, th)
    with pytest.raises(InvertedGreyscale, match="grey scale looks inverted"):
        pipeline.run(wrong, th)


@pytest.mark.skipif(not os.path.isdir(DATA), reason="../shared/data is absent")
def test_real_chest_films_pass_and_the_same_films_inverted_do_not(pipeline):
    spec = pipeline.classifier.manifest.preprocessing
    limit = pipeline.thresholds.polarity_min
    from edge.preprocess import preprocess
    siim = sorted(glob.glob(os.path.join(DATA, "siim-ptx-png", "*", "images", "*.png")))
    nih = sorted(glob.glob(os.path.join(DATA, "nih-cxr14-subset", "images", "*.png")))[:60]
    assert siim and nih
    for path in siim + nih:
        px = decode_file(path).pixels
        right, inverted = correlation(preprocess(px, spec)[0]), correlation(preprocess(1 - px, spec)[0])
        assert inverted < limit, path
        # two NIH films are stored inverted (00017999_000, 00017625_000): not in the first 60
        assert right >= limit, path
    for path in siim[:10]:                   # a film zoomed out in a white frame: the frame is trimmed
        px = decode_file(path).pixels
        framed = np.pad(px, [(s // 8, s // 8) for s in px.shape], constant_values=1.0)
        assert correlation(preprocess(framed, spec)[0]) >= limit, path
