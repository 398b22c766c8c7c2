"""Device profiles: the shipped ones load; mistakes are errors naming file, line and key."""
import pytest

from build_engine.profiles import load_profile, parse_profile
from edge.errors import ConfigError

BASE = """name: t
runtime: tensorrt
precisions: [fp16, int8]
platform: {dla_cores: 2, compute_capability: "7.2"}
build:
  workspace_mib: 512
parity:
  fp16: {max_abs_diff: 0.1, max_prob_diff: 0.01, min_dice: 0.9}
  int8: {max_abs_diff: 0.5, max_prob_diff: 0.05, min_dice: 0.9}
"""


def test_shipped_profiles_load():
    nx = load_profile("xavier_nx")
    assert nx.compute_capability == "7.2" and nx.dla_cores == 2 and nx.tensorrt == "8.5"
    assert nx.workspace_mib * 1 << 20 <= 2 << 30    # fits an 8 GB shared-memory board
    assert nx.placement("classifier").dla_core == 0 and nx.placement("segmenter").dla_core is None
    assert load_profile("orin_nx").compute_capability == "8.7"
    cpu = load_profile("cpu")
    assert cpu.runtime == "onnxruntime" and (cpu.activation_type, cpu.weight_type) == ("uint8", "int8")


def test_unknown_key_names_file_line_and_key():
    text = BASE.replace("  workspace_mib: 512", "  workspace_mib: 512\n  worspace: 3")
    with pytest.raises(ConfigError) as e:
        parse_profile(text, "nx.yaml")
    assert "nx.yaml:7" in str(e.value) and "[build.worspace]" in str(e.value) and "unknown key" in str(e.value)


@pytest.mark.parametrize("change, message", [
    (("workspace_mib: 512", "workspace_mib: true"), "got a boolean"),
    (("runtime: tensorrt", "runtime: openvino"), "runtime 'openvino'"),
    (("precisions: [fp16, int8]", "precisions: [fp16, int4]"), "precision 'int4'"),
    (("  int8: {max_abs_diff: 0.5, max_prob_diff: 0.05, min_dice: 0.9}\n", ""), "no parity tolerance for allowed"),
])
def test_invalid_values_are_rejected(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_profile(BASE.replace(*change), "p.yaml")


def test_placement_rules():
    dla3 = BASE + "models:\n  classifier: {precision: int8, dla_core: 3}\n"
    with pytest.raises(ConfigError, match="dla_core 3 does not exist"):
        parse_profile(dla3, "p.yaml")
    fp32 = BASE + "models:\n  segmenter: {precision: fp32}\n"
    with pytest.raises(ConfigError, match="not allowed"):
        parse_profile(fp32, "p.yaml")
    role = BASE + "models:\n  detector: {precision: fp16}\n"
    with pytest.raises(ConfigError, match="unknown model role"):
        parse_profile(role, "p.yaml")


def test_missing_profile_lists_known_ones():
    with pytest.raises(ConfigError, match="xavier_nx"):
        load_profile("jetson_tx1")
