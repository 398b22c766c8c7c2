"""Engine sidecars: round trip, and every mismatch refused with the exact rebuild command."""
import pytest

from edge.errors import EngineMismatch, ModelError
from edge.inference.engine_sidecar import (DeviceFacts, EngineSidecar, check_sidecar, engine_filename,
                                           find_engine, read_l4t_release, read_sidecar, rebuild_command,
                                           sidecar_mismatches, write_sidecar)

NX = DeviceFacts("8.5.2.2", "11.4", "35.3.1", "7.2", "Xavier", 2)


def sidecar(**kw):
    base = dict(model="classifier", device="xavier_nx", precision="int8", source_onnx="models/c.onnx",
                source_sha256="a" * 64, preprocess_digest="p" * 64, tensorrt_version="8.5.2.2",
                cuda_version="11.4", l4t_version="35.3.1", compute_capability="7.2", dla_core=0)
    base.update(kw)
    return EngineSidecar(**base)


def test_round_trip(tmp_path):
    path = str(tmp_path / "x.engine.json")
    s = sidecar(layer_precisions={"int8": 40, "fp16": 3}, dla_fallback_layers=["sigmoid"],
                parity={"max_prob_diff": 0.01})
    write_sidecar(path, s)
    assert read_sidecar(path) == s
    assert sidecar_mismatches(s, NX, "a" * 64, "p" * 64) == []


def test_unknown_keys_and_missing_files_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        read_sidecar(str(tmp_path / "none.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1, "model": "x", "surprise": 1}')
    with pytest.raises(ModelError, match="unknown sidecar keys surprise"):
        read_sidecar(str(bad))


@pytest.mark.parametrize("facts, sha, digest, expect", [
    (NX, "b" * 64, "p" * 64, "model changed"),
    (NX, "a" * 64, "q" * 64, "preprocessing changed"),
    (DeviceFacts("8.6.1", "11.4", "35.3.1", "7.2", "Xavier", 2), "a" * 64, "p" * 64, "TensorRT 8.6.1 here"),
    (DeviceFacts("8.5.2.2", "11.4", "35.3.1", "8.7", "Orin", 2), "a" * 64, "p" * 64, "compute capability 8.7"),
    (DeviceFacts("8.5.2.2", "11.4", "35.4.1", "7.2", "Xavier", 2), "a" * 64, "p" * 64, "L4T 35.4.1 here"),
    (DeviceFacts("8.5.2.2", "11.4", "35.3.1", "7.2", "Nano", 0), "a" * 64, "p" * 64, "DLA core 0"),
    (DeviceFacts(), "a" * 64, "p" * 64, "TensorRT unknown here"),
])
def test_mismatch_is_refused_with_the_rebuild_command(facts, sha, digest, expect):
    cmd = rebuild_command("models/classifier/classifier.onnx", "xavier_nx", "int8", "engines")
    with pytest.raises(EngineMismatch) as e:
        check_sidecar(sidecar(), facts, sha, digest, cmd, "engines/classifier.int8.xavier_nx.engine")
    msg = str(e.value)
    assert expect in msg
    assert ("python3 -m build_engine --onnx models/classifier/classifier.onnx --device xavier_nx "
            "--precision int8 --out engines") in msg


def test_unknown_l4t_on_a_plain_linux_host_is_tolerated():
    facts = DeviceFacts("8.5.2.2", "11.4", None, "7.2", "Xavier", 2)
    assert sidecar_mismatches(sidecar(), facts, "a" * 64, "p" * 64) == []


def test_rebuild_command_quotes_paths():
    assert "'my models/c.onnx'" in rebuild_command("my models/c.onnx", "xavier_nx", "fp16", "engines")


def test_find_engine_prefers_the_profile_precision(tmp_path):
    for p in ("fp16", "int8"):
        (tmp_path / engine_filename("seg", p, "xavier_nx")).write_bytes(b"x")
    path, found = find_engine(str(tmp_path), "seg", "xavier_nx", "fp16")
    assert path.endswith("seg.fp16.xavier_nx.engine") and len(found) == 2
    assert find_engine(str(tmp_path), "seg", "xavier_nx")[0].endswith("seg.int8.xavier_nx.engine")
    assert find_engine(str(tmp_path), "seg", "orin_nx")[0] is None


def test_l4t_release_file_parsing():
    text = "# R35 (release), REVISION: 3.1, GCID: 32827747, BOARD: t186ref, EABI: aarch64, DATE: Sun Mar 19\n"
    assert read_l4t_release(text) == "35.3.1"
    assert read_l4t_release("") is None and read_l4t_release("garbage") is None
