"""gate-eval's inputs: every non-chest picture reaches the runtime in the three
forms the gate is measured on, and every damage done to a chest film keeps it
a valid decoded image that differs from the original."""
import os

import numpy as np
import pytest

pytest.importorskip("cv2")
pytestmark = pytest.mark.models

from edge.decode import decode_file  # noqa: E402
from models.gate_eval import DEGRADATIONS, _as_uint8, _write_variants  # noqa: E402


def test_small_and_odd_pictures_become_uint8_at_least_256_px():
    assert _as_uint8(np.zeros((25, 40), bool)).shape == (256, 410)
    wide = _as_uint8(np.arange(300 * 600, dtype=np.uint16).reshape(300, 600))
    assert wide.dtype == np.uint8 and wide.min() == 0 and wide.max() == 255
    assert _as_uint8(np.zeros((300, 300, 4), np.uint8)).shape == (300, 300, 3)   # alpha dropped


def test_a_picture_is_written_as_png_and_as_dx_claiming_chest_and_untagged(tmp_path):
    rng = np.random.default_rng(0)
    img = (rng.random((300, 320, 3)) * 255).astype(np.uint8)
    items = _write_variants(str(tmp_path), "thing.jpg", img, "fresh")
    assert [k for k, _ in items] == ["fresh_png", "fresh_dx_chest", "fresh_dx_untagged"]
    assert all(os.path.exists(p) for _, p in items)
    tagged, untagged = decode_file(items[1][1]), decode_file(items[2][1])
    assert tagged.body_part_examined == "CHEST" and untagged.body_part_examined is None
    assert tagged.modality == "DX" and tagged.pixels.shape == (300, 320)
    np.testing.assert_array_equal(tagged.pixels, untagged.pixels)


@pytest.mark.parametrize("name,damage", DEGRADATIONS, ids=[n for n, _ in DEGRADATIONS])
def test_each_degradation_keeps_a_valid_film_and_changes_it(name, damage):
    y, x = np.mgrid[0:512, 0:400]
    film = (0.5 + 0.4 * np.sin(x / 17.0) * np.cos(y / 23.0)).astype(np.float32)
    out = damage(film, 3)
    assert out.shape == film.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.abs(out - film).mean() > 1e-4
