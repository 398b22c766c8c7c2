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
    (("workspace_mib: 512", "workspace_mib: true"), "p.yaml:6 [build.workspace_mib]: expected an integer, got a boolean"),
    (("workspace_mib: 512", "workspace_mib: 0"), "p.yaml:6 [build.workspace_mib]: must be greater than 0, got 0"),
    (("runtime: tensorrt", "runtime: openvino"),
     "p.yaml:2 [runtime]: 'openvino' is not allowed; use one of: tensorrt, onnxruntime"),
    (("precisions: [fp16, int8]", "precisions: [fp16, int4]"),
     "p.yaml:3 [precisions[1]]: 'int4' is not allowed; use one of: fp32, fp16, int8"),
    (('compute_capability: "7.2"', "compute_capability: 7.2"),
     "p.yaml:4 [platform.compute_capability]: expected a string or null, got a number 7.2 (put it in quotes"),
    (("  workspace_mib: 512", "  workspace_mib: 512\n  builder_optimization_level: 6"),
     "p.yaml:7 [build.builder_optimization_level]: must be 0..5, got 6"),
    (("  int8: {max_abs_diff: 0.5, max_prob_diff: 0.05, min_dice: 0.9}\n", ""),
     "[parity]: no parity tolerance for allowed precision int8"),
    (("int8: {max_abs_diff: 0.5, max_prob_diff: 0.05, min_dice: 0.9}", "int8: {max_abs_diff: 0.5, min_dice: 0.9}"),
     "p.yaml:9 [parity.int8.max_prob_diff]: required key 'max_prob_diff' is missing"),
    (("  fp16: {max", "  fp4: {max"), "p.yaml:8 [parity.fp4]: unknown key 'fp4' at section 'parity'"),
    (("name: t\n", ""), "p.yaml:1 [name]: required key 'name' is missing"),
])
def test_invalid_values_are_rejected(change, message):
    assert BASE.count(change[0]) == 1
    with pytest.raises(ConfigError) as e:
        parse_profile(BASE.replace(*change), "p.yaml")
    assert message in str(e.value)


def test_placement_rules():
    dla3 = BASE + "models:\n  classifier: {precision: int8, dla_core: 3}\n"
    with pytest.raises(ConfigError, match=r"p.yaml:11 \[models.classifier.dla_core\]: dla_core 3 does not exist"):
        parse_profile(dla3, "p.yaml")
    fp32 = BASE + "models:\n  segmenter: {precision: fp32}\n"
    with pytest.raises(ConfigError, match=r"\[models.segmenter.precision\]: precision 'fp32' is not allowed on t"):
        parse_profile(fp32, "p.yaml")
    role = BASE + "models:\n  detector: {precision: fp16}\n"
    with pytest.raises(ConfigError, match=r"p.yaml:11 \[models.detector\]: unknown key 'detector'.*classifier, segmenter"):
        parse_profile(role, "p.yaml")
    typo = BASE + "models:\n  segmenter: {precison: fp16}\n"
    with pytest.raises(ConfigError, match="did you mean 'precision'"):
        parse_profile(typo, "p.yaml")


def test_defaults_fill_what_a_profile_leaves_out():
    p = parse_profile(BASE, "p.yaml")
    assert (p.int8_mode, p.calibrate_method, p.quant_formats, p.max_opset, p.batch) == ("qdq", "minmax", ("qdq",), 17, 1)
    assert p.models == {} and p.placement("segmenter").precision == "int8"
    assert p.tolerance("fp16").max_prob_diff == 0.01


def test_an_empty_profile_names_the_first_required_key():
    with pytest.raises(ConfigError, match=r"e.yaml:1 \[name\]: required key 'name' is missing"):
        parse_profile("# nothing\n", "e.yaml")


def test_the_runtime_reads_the_engine_precision_through_the_same_loader(tmp_path):
    from edge.inference.device_profile import profile_precision
    assert profile_precision("xavier_nx", "classifier") == "fp16"
    assert profile_precision("xavier_nx", "segmenter") == "fp16"
    assert profile_precision(str(tmp_path / "absent.yaml"), "segmenter") is None
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("workspace_mib: 512", "worspace_mib: 512"))
    with pytest.raises(ConfigError, match=r"bad.yaml:6 \[build.worspace_mib\]: unknown key"):
        profile_precision(str(bad), "classifier")


def test_missing_profile_lists_known_ones():
    with pytest.raises(ConfigError, match="xavier_nx"):
        load_profile("jetson_tx1")


def test_doctor_reports_an_invalid_profile_with_its_file_and_line(tmp_path, monkeypatch):
    from build_engine.tiny_models import make_classifier, make_segmenter
    from edge.doctor import check_engines
    from edge.settings import Settings
    devices = tmp_path / "config" / "devices"
    devices.mkdir(parents=True)
    (devices / "broken.yaml").write_text(BASE.replace("runtime: tensorrt", "runtime: tensorrtt"))
    settings = Settings()
    settings.models.classifier = make_classifier(str(tmp_path / "models"), size=32, width=4)
    settings.models.segmenter = make_segmenter(str(tmp_path / "models"), size=32, width=4)
    settings.models.backend, settings.models.device_profile = "tensorrt", "broken"
    monkeypatch.chdir(tmp_path)
    checks = check_engines(settings)
    assert [c.name for c in checks] == ["engine:classifier", "engine:segmenter"]
    for c in checks:
        assert c.status == "FAIL"
        assert c.detail.startswith("%s:2 [runtime]: 'tensorrtt' is not allowed" % (devices / "broken.yaml"))
