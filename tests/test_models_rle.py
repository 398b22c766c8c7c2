"""SIIM RLE: column-major, relative starts, '-1' for none, BOM, several rows per image."""
import os

import numpy as np
import pytest

from models import rle

SAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "siim-rle-sample",
                      "train-rle-sample.csv")


def test_decode_is_column_major_with_relative_starts():
    # 4x3 mask; pixels numbered down the columns: run "1 2" covers (1,0),(2,0);
    # the next start is relative to that run's end: "3 2" -> index 6,7 = (2,1),(3,1)
    m = rle.decode("1 2 3 2", height=4, width=3)
    expected = np.zeros((4, 3), np.uint8)
    expected[1:3, 0] = 1
    expected[2:4, 1] = 1
    assert np.array_equal(m, expected)


def test_round_trip_random_masks():
    rng = np.random.default_rng(3)
    for _ in range(20):
        m = (rng.random((37, 29)) > 0.7).astype(np.uint8)
        assert np.array_equal(rle.decode(rle.encode(m), 37, 29), m)


def test_empty_mask_is_minus_one_both_ways():
    assert rle.encode(np.zeros((8, 8))) == "-1"
    assert not rle.decode(" -1", 8, 8).any()


def test_run_past_the_end_is_refused():
    with pytest.raises(rle.RleError):
        rle.decode("60 10", 8, 8)


def test_csv_with_bom_several_regions_and_negatives(tmp_path):
    a = np.zeros((16, 16), np.uint8)
    a[2:5, 3:6] = 1
    b = np.zeros((16, 16), np.uint8)
    b[10:14, 9:12] = 1
    path = tmp_path / "stage_2_train.csv"
    path.write_bytes(("\ufeffImageId, EncodedPixels\nimg1, %s\nimg2, -1\nimg1, %s\n"
                      % (rle.encode(a), rle.encode(b))).encode("utf-8"))
    table = rle.read_rle_csv(str(path))
    assert list(table) == ["img1", "img2"]
    assert table["img2"] == []
    assert np.array_equal(rle.mask_from_rles(table["img1"], 16, 16), a | b)
    assert rle.summarise(table) == {"images": 2, "positive": 1, "negative": 1, "regions": 2}


@pytest.mark.shared_data
def test_shared_sample_round_trips():
    if not os.path.exists(SAMPLE):
        pytest.skip("../shared/data/siim-rle-sample absent")
    table = rle.read_rle_csv(SAMPLE)
    assert all(not k.startswith("\ufeff") for k in table)
    assert rle.summarise(table)["positive"] == 5 and rle.summarise(table)["negative"] == 5
    for runs in table.values():
        for r in runs:
            assert rle.encode(rle.decode(r)) == r.strip()
