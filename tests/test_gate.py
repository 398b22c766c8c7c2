"""The not-a-chest gate's pure checks, and the DICOM tag reaching the Image."""
import numpy as np
import pytest

from edge.decode import decode_file
from edge.errors import DecodeError, NotAChestRadiograph
from edge.gate import body_part_is_chest, check_body_part, check_ood
from tests.dicom_factory import write_dicom


@pytest.mark.parametrize("tag", ["CHEST", "chest", " Chest ", "THORAX", "CHEST_ABDOMEN", "Lungs"])
def test_chest_body_parts_pass(tag):
    assert body_part_is_chest(tag) is True
    check_body_part(tag)


@pytest.mark.parametrize("tag", ["EXTREMITY", "HAND", "KNEE", "SKULL", "ABDOMEN", "WHOLE BODY", "PELVIS"])
def test_other_body_parts_are_refused_with_the_reason_code(tag):
    assert body_part_is_chest(tag) is False
    with pytest.raises(NotAChestRadiograph) as exc:
        check_body_part(tag)
    assert exc.value.code == "not_a_chest_radiograph" and isinstance(exc.value, DecodeError)
    assert tag.strip() in str(exc.value)


@pytest.mark.parametrize("tag", [None, "", "   "])
def test_absent_tag_gives_no_verdict(tag):
    assert body_part_is_chest(tag) is None
    check_body_part(tag)


def test_ood_threshold():
    check_ood(3.0, 5.0)
    check_ood(5.0, 5.0)
    check_ood(None, 5.0)
    check_ood(99.0, None)
    for bad in (5.01, float("nan"), float("inf")):
        with pytest.raises(NotAChestRadiograph):
            check_ood(bad, 5.0)
    with pytest.raises(NotAChestRadiograph, match="layout distance 8.0 > 5.0"):
        check_ood(8.0, 5.0, "layout")


def test_decoder_reads_body_part_examined(tmp_path):
    tagged = decode_file(write_dicom(tmp_path / "a.dcm", body_part="EXTREMITY"))
    untagged = decode_file(write_dicom(tmp_path / "b.dcm"))
    assert tagged.body_part_examined == "EXTREMITY" and untagged.body_part_examined is None


def test_a_damaged_body_part_is_refused_without_quoting_what_ran_into_it():
    spilled = "EXTREMITY\\DOE^JANE\\19510203"      # a bad length ran the value into name and birth date
    with pytest.raises(NotAChestRadiograph) as err:
        check_body_part(spilled)
    assert "DOE" not in str(err.value) and "1951" not in str(err.value)
    assert "unlisted value" in str(err.value)
    with pytest.raises(NotAChestRadiograph, match="BodyPartExamined is EXTREMITY, not the chest"):
        check_body_part("EXTREMITY")


@pytest.mark.parametrize("value", ["HAND \u24d9\u24de\u24d7\u24dd", "HAND \u24a5\u24aa\u24a3\u24a9", "HAND \U0001f1ef\U0001f1f4", "HAND\n\x1b[2J"])
def test_symbols_around_a_term_are_never_quoted(value):
    with pytest.raises(NotAChestRadiograph) as err:
        check_body_part(value)
    said = str(err.value)
    assert "BodyPartExamined is HAND, not the chest" in said or "is an unlisted value" in said
    assert all(ch.isascii() and ch.isprintable() for ch in said), said
