"""Config loading: the shipped files, and every mistake reported with
file:line, the dotted key and something the engineer can act on."""
import dataclasses
import os
import textwrap
from pathlib import Path

import pytest
import yaml

from edge.config import PROJECT_ROOT, describe, load_config
from edge.errors import ConfigError
from edge.settings import Settings

CONFIG_DIR = PROJECT_ROOT / "config"


def write(tmp_path: Path, text: str, name: str = "site.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def error_of(path=None, overrides=None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return info.value


def leaf_keys(cls, prefix=""):
    keys = set()
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        if dataclasses.is_dataclass(f.type):
            keys |= leaf_keys(f.type, prefix + f.name + ".")
        else:
            keys.add(prefix + f.name)
    return keys


def yaml_leaf_keys(node, prefix=""):
    keys = set()
    for k, v in node.value:
        if isinstance(v, yaml.MappingNode):
            keys |= yaml_leaf_keys(v, prefix + k.value + ".")
        else:
            keys.add(prefix + k.value)
    return keys


# -- the shipped files ---------------------------------------------------------

def test_shipped_edge_yaml_equals_the_defaults(monkeypatch):
    # Its relative paths resolve against config/, the defaults' against the
    # project root (models) and the working directory (data): run from the root.
    monkeypatch.chdir(PROJECT_ROOT)
    shipped = load_config(str(CONFIG_DIR / "edge.yaml"))
    assert shipped.source_file == str(CONFIG_DIR / "edge.yaml")
    shipped.source_file = None
    assert shipped == load_config()


def test_shipped_edge_yaml_lists_every_key():
    root = yaml.compose((CONFIG_DIR / "edge.yaml").read_text(), Loader=yaml.SafeLoader)
    assert yaml_leaf_keys(root) == leaf_keys(Settings)


def test_production_yaml_fails_only_for_its_absent_files(tmp_path):
    path = str(CONFIG_DIR / "production.yaml")
    err = error_of(path)
    lines = Path(path).read_text().splitlines()
    assert err.file == path
    assert err.key == "mqtt.password_file"
    assert lines[err.line - 1].lstrip().startswith("password_file:")
    assert "/etc/pneumo-edge/mqtt.password does not exist" in str(err)
    for absent in ("/etc/pneumo-edge/tls/ca.crt", "/etc/pneumo-edge/tls/client.crt",
                   "/etc/pneumo-edge/tls/client.key"):
        assert absent in str(err)

    present = {}
    for key in ("mqtt.password_file", "mqtt.tls.ca_file", "mqtt.tls.cert_file",
                "mqtt.tls.key_file"):
        f = tmp_path / key
        f.write_text("x")
        present[key] = str(f)
    settings = load_config(path, present)
    assert settings.mqtt.tls.enabled and settings.mqtt.tls.ca_file == present["mqtt.tls.ca_file"]
    assert settings.models.backend == "tensorrt"
    assert settings.models.engine_dir == "/var/lib/pneumo-edge/engines"
    assert settings.capture.dir == "/var/lib/pneumo-edge/capture"
    assert settings.state_dir == "/var/lib/pneumo-edge/state"


def test_no_file_gives_the_defaults_with_resolved_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_config()
    assert settings.source_file is None
    assert settings.site == Settings().site and settings.mqtt == Settings().mqtt
    assert settings.models.classifier == str(PROJECT_ROOT / "models/classifier/classifier.onnx")
    assert settings.models.engine_dir == str(PROJECT_ROOT / "engines")
    assert settings.capture.dir == str(tmp_path / "capture")
    assert settings.state_dir == str(tmp_path / "state")


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "---\n"])
def test_an_empty_file_means_the_defaults(tmp_path, text):
    settings = load_config(write(tmp_path, text))
    settings.source_file = None
    assert settings == load_config()


# -- unknown keys, duplicates, syntax -------------------------------------------

def test_unknown_top_level_key_names_file_line_and_a_suggestion(tmp_path):
    path = write(tmp_path, """
        site: w4
        devise: c2
    """)
    err = error_of(path)
    assert (err.file, err.line, err.key) == (path, 2, "devise")
    assert str(err).startswith("%s:2 [devise]: unknown key" % path)
    assert "did you mean 'device'" in str(err)
    assert "Allowed keys: site, device, state_dir" in str(err)


def test_unknown_nested_key_names_the_dotted_key_and_its_line(tmp_path):
    path = write(tmp_path, """
        mqtt:
          host: broker
          tls:
            enabled: false
            ca_flie: /x
    """)
    err = error_of(path)
    assert (err.line, err.key) == (5, "mqtt.tls.ca_flie")
    assert "did you mean 'ca_file'" in str(err)
    assert "section 'mqtt.tls'" in str(err)


def test_a_key_in_the_wrong_section_says_where_it_belongs(tmp_path):
    err = error_of(write(tmp_path, "port: 1884\n"))
    assert err.key == "port" and "it belongs at 'mqtt.port'" in str(err)


def test_the_internal_source_file_field_is_not_a_config_key(tmp_path):
    err = error_of(write(tmp_path, "source_file: /x\n"))
    assert err.key == "source_file" and "unknown key" in str(err)


def test_duplicate_key_is_an_error_at_its_second_line(tmp_path):
    path = write(tmp_path, """
        mqtt:
          port: 1883
          host: a
          port: 1884
    """)
    err = error_of(path)
    assert (err.line, err.key) == (4, "mqtt.port")
    assert "duplicate key 'port' (first set on line 2)" in str(err)


def test_invalid_yaml_reports_the_line(tmp_path):
    path = write(tmp_path, """
        site: w4
        mqtt:
          host: [unclosed
    """)
    err = error_of(path)
    assert err.file == path and err.line == 4 and "not valid YAML" in str(err)


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path):
    err = error_of(write(tmp_path, "- site\n- device\n"))
    assert err.line == 1 and "must be a mapping" in str(err)


def test_a_missing_file_is_a_config_error(tmp_path):
    err = error_of(str(tmp_path / "nope.yaml"))
    assert "config file not found" in str(err)


# -- types ------------------------------------------------------------------------

@pytest.mark.parametrize("text, line, key, expected", [
    ("mqtt:\n  port: abc\n", 2, "mqtt.port", "expected an integer, got a string 'abc'"),
    ("capture:\n  settle_s: soon\n", 2, "capture.settle_s",
     "expected a number, got a string 'soon'"),
    ("capture: [a, b]\n", 1, "capture", "expected a mapping (a section of settings), got a list"),
    ("mqtt:\n  host:\n    name: x\n", 3, "mqtt.host", "expected a string, got a mapping"),
    ("site: [a]\n", 1, "site", "expected a string, got a list"),
    ("device: 010\n", 1, "device", "expected a string, got an integer 010 (put it in quotes"),
    ("decode:\n  reject_lateral: 1\n", 2, "decode.reject_lateral",
     "expected true or false, got an integer 1"),
    ("capture:\n  ignore: '*.tmp'\n", 2, "capture.ignore",
     "expected a list of strings, got a string '*.tmp'"),
    ("capture:\n  ignore:\n    - '*.tmp'\n    - 5\n", 4, "capture.ignore[1]",
     "expected a string, got an integer 5"),
    ("site: null\n", 1, "site", "expected a string, got null"),
    ("capture:\n  settle_s: 1e3\n", 2, "capture.settle_s", "write 1.0e3"),
    ("capture:\n  settle_s: .inf\n", 2, "capture.settle_s", "expected a finite number"),
])
def test_wrong_types_name_the_expected_type_and_the_value(tmp_path, text, line, key, expected):
    err = error_of(write(tmp_path, text))
    assert (err.line, err.key) == (line, key)
    assert expected in str(err)


@pytest.mark.parametrize("value", ["yes", "on", "true", "no"])
def test_a_boolean_is_not_accepted_for_a_number(tmp_path, value):
    err = error_of(write(tmp_path, "mqtt:\n  port: %s\n" % value))
    assert err.key == "mqtt.port" and err.line == 2
    assert "expected an integer, got a boolean %s" % value in str(err)
    err = error_of(write(tmp_path, "mqtt:\n  reconnect_max_s: %s\n" % value))
    assert "expected a number, got a boolean" in str(err)


def test_ints_widen_to_floats_and_null_fills_optionals(tmp_path):
    settings = load_config(write(tmp_path, """
        capture:
          settle_s: 2
        decision:
          pixel_high: null
          classifier_positive: 1
    """))
    assert settings.capture.settle_s == 2.0 and isinstance(settings.capture.settle_s, float)
    assert settings.decision.pixel_high is None
    assert settings.decision.classifier_positive == 1.0


def test_a_section_left_empty_keeps_its_defaults(tmp_path):
    settings = load_config(write(tmp_path, "mqtt:\n  # tls: all commented out\n"))
    assert settings.mqtt == Settings().mqtt


# -- value rules ------------------------------------------------------------------

@pytest.mark.parametrize("text, key, expected", [
    ("capture:\n  watch: fanotify\n", "capture.watch",
     "'fanotify' is not allowed; use one of: auto, inotify, poll"),
    ("capture:\n  on_success: archive\n", "capture.on_success", "use one of: move, delete"),
    ("models:\n  backend: cuda\n", "models.backend", "use one of: onnxruntime, tensorrt, auto"),
    ("decision:\n  rule: classifier\n", "decision.rule", "use one of: mask, mask_or_classifier"),
    ("log_level: LOUD\n", "log_level", "'LOUD' is not a logging level"),
    ("mqtt:\n  port: 70000\n", "mqtt.port", "must be 1..65535, got 70000"),
    ("mqtt:\n  port: 0\n", "mqtt.port", "must be 1..65535"),
    ("decision:\n  pixel_high: 1.5\n", "decision.pixel_high", "must be between 0 and 1"),
    ("decision:\n  min_area_fraction: -0.1\n", "decision.min_area_fraction",
     "must be between 0 and 1"),
    ("capture:\n  settle_s: 0\n", "capture.settle_s", "must be greater than 0"),
    ("mqtt:\n  reconnect_min_s: -1\n", "mqtt.reconnect_min_s", "must be greater than 0"),
    ("models:\n  threads: -1\n", "models.threads", "'auto' or an integer >= 0"),
    ("site: ''\n", "site", "must not be empty"),
    ("site: ward/4\n", "site", "may not contain '+', '#', '/' or spaces"),
    ("device: 'cart #1'\n", "device", "may not contain"),
    ("device: c+1\n", "device", "may not contain"),
    ("mqtt:\n  tls:\n    enabled: true\n", "mqtt.tls.enabled", "ca_file is not set"),
    ("mqtt:\n  tls:\n    cert_file: c.crt\n", "mqtt.tls.cert_file",
     "needs both mqtt.tls.cert_file and mqtt.tls.key_file"),
    ("mqtt:\n  tls:\n    key_file: c.key\n", "mqtt.tls.key_file", "mqtt.tls.cert_file is not set"),
    ("mqtt:\n  reconnect_min_s: 5\n  reconnect_max_s: 2\n", "mqtt.reconnect_max_s",
     "mqtt.reconnect_max_s (2) is smaller than mqtt.reconnect_min_s (5)"),
    ("mqtt:\n  username: u\n  password_file: nope.txt\n", "mqtt.password_file",
     "does not exist"),
    ("mqtt:\n  password_env: PW\n", "mqtt.password_env", "needs mqtt.username"),
])
def test_value_rules_name_the_key_and_its_line(tmp_path, text, key, expected):
    path = write(tmp_path, text)
    err = error_of(path)
    assert err.key == key and err.file == path
    assert key.rsplit(".", 1)[-1] + ":" in Path(path).read_text().splitlines()[err.line - 1]
    assert expected in str(err)


def test_log_level_is_case_insensitive_and_normalised(tmp_path):
    assert load_config(write(tmp_path, "log_level: debug\n")).log_level == "DEBUG"


# -- overrides --------------------------------------------------------------------

def test_overrides_win_over_the_file(tmp_path):
    path = write(tmp_path, "site: w1\nmqtt:\n  host: a\n  port: 1883\n")
    settings = load_config(path, {"site": "w4", "device": "c2", "mqtt.host": "h",
                                  "mqtt.port": 1884, "capture.dir": "/data/capture",
                                  "state_dir": "/var/lib/pneumo-edge", "log_level": None})
    assert (settings.site, settings.device) == ("w4", "c2")
    assert (settings.mqtt.host, settings.mqtt.port) == ("h", 1884)
    assert settings.capture.dir == "/data/capture"
    assert settings.state_dir == "/var/lib/pneumo-edge"
    assert settings.log_level == "INFO"  # None = flag not given


@pytest.mark.parametrize("overrides, key, expected", [
    ({"mqtt.port": "1884"}, "mqtt.port", "expected an integer, got a string '1884'"),
    ({"mqtt.port": 99999}, "mqtt.port", "must be 1..65535"),
    ({"mqtt.prot": 1}, "mqtt.prot", "did you mean 'port'"),
    ({"capture": "/x"}, "capture", "is a section"),
    ({"site.name": "x"}, "site.name", "is a single setting"),
    ({"site": "a b"}, "site", "may not contain"),
    ({"capture.ignore": ["ok", 3]}, "capture.ignore[1]", "expected a string"),
])
def test_overrides_are_validated_and_blamed_on_the_command_line(overrides, key, expected):
    err = error_of(None, overrides)
    assert err.file == "command line" and err.key == key
    assert str(err).startswith("command line [%s]: " % key)
    assert expected in str(err)


# -- paths ------------------------------------------------------------------------

def test_relative_paths_in_a_file_resolve_against_its_directory(tmp_path, monkeypatch):
    conf = tmp_path / "etc"
    conf.mkdir()
    (tmp_path / "secret").write_text("s3cret")
    path = write(conf, """
        state_dir: ../state
        capture:
          dir: cap
        models:
          classifier: /abs/c.onnx
          engine_dir: ../engines
        mqtt:
          username: u
          password_file: ../secret
    """)
    monkeypatch.chdir(PROJECT_ROOT)
    settings = load_config(path)
    assert settings.state_dir == str(tmp_path / "state")
    assert settings.capture.dir == str(conf / "cap")
    assert settings.models.classifier == "/abs/c.onnx"
    assert settings.models.engine_dir == str(tmp_path / "engines")
    assert settings.mqtt.password_file == str(tmp_path / "secret")
    # Not written in the file: defaults keep their own bases.
    assert settings.models.segmenter == str(PROJECT_ROOT / "models/segmenter/segmenter.onnx")


def test_relative_override_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    conf = tmp_path / "etc"
    conf.mkdir()
    path = write(conf, "capture:\n  dir: cap\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    settings = load_config(path, {"capture.dir": "incoming-here", "models.segmenter": "s.onnx"})
    assert settings.capture.dir == str(work / "incoming-here")
    assert settings.models.segmenter == str(work / "s.onnx")


# -- presenting -------------------------------------------------------------------

def test_describe_never_shows_the_password(tmp_path):
    secret = tmp_path / "mqtt.password"
    secret.write_text("s3cret\n")
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    path = write(tmp_path, """
        site: w4
        mqtt:
          host: broker.local
          port: 8883
          username: edge
          password_file: mqtt.password
          tls:
            enabled: true
            ca_file: ca.crt
    """)
    settings = load_config(path)
    text = describe(settings)
    assert "s3cret" not in text
    assert "password: from file %s" % secret in text
    assert "broker.local:8883" in text and "TLS:         on (CA %s" % ca in text
    assert "w4" in text and str(tmp_path / "site.yaml") in text


def test_describe_names_a_password_env_variable_not_its_value(monkeypatch):
    monkeypatch.setenv("PNEUMO_TEST_PW", "s3cret")
    text = describe(load_config(None, {"mqtt.username": "u", "mqtt.password_env": "PNEUMO_TEST_PW"}))
    assert "password: from env PNEUMO_TEST_PW (set here)" in text
    assert "s3cret" not in text
    assert "TLS:         off" in text



# -- limits declared on the fields ----------------------------------------------------

def _declared(cls=Settings, prefix=""):
    """(dotted key, dataclass field) for every config field, sections expanded."""
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.type):
            out += _declared(f.type, prefix + f.name + ".")
        elif not f.metadata.get("internal"):
            out.append((prefix + f.name, f))
    return out


def _outside(meta):
    """A value each declared limit refuses."""
    if "choices" in meta:
        return "no-such-choice"
    if "gt" in meta:
        return meta["gt"]
    if "ge" in meta:
        return meta["ge"] - 1
    if "le" in meta:
        return meta["le"] + 1
    if meta.get("nonempty"):
        return " "
    return {"topic_level": "a/b", "topic_prefix": "a//b", "profile_name": "../x", "threads": "many",
            "films_in_flight": 0, "ae_title": "AN_AE_TITLE_OVER_16", "max_pdu": 100}[meta["format"]]


LIMITED = [(key, f) for key, f in _declared() if f.metadata]


def test_every_field_rule_is_one_the_walker_knows():
    from edge.config import FORMATS
    from edge.field_rules import RULE_KEYS
    assert len(LIMITED) >= 30
    for key, f in LIMITED:
        assert set(f.metadata) <= RULE_KEYS, key
        if "format" in f.metadata:
            assert f.metadata["format"] in FORMATS, key


def test_the_defaults_keep_their_own_limits():
    from edge.config import FORMATS
    from edge.field_rules import rule_problem
    defaults = Settings()
    for key, f in LIMITED:
        value = defaults
        for name in key.split("."):
            value = getattr(value, name)
        assert rule_problem(f.metadata, value, FORMATS)[1] is None, key


@pytest.mark.parametrize("key, f", LIMITED, ids=[k for k, _ in LIMITED])
def test_every_declared_limit_is_enforced_in_a_file_and_on_the_command_line(tmp_path, key, f):
    bad = _outside(f.metadata)
    *sections, name = key.split(".")
    lines = ["%s%s:" % ("  " * i, s) for i, s in enumerate(sections)]
    lines.append("%s%s: %s" % ("  " * len(sections), name, yaml.safe_dump(bad).splitlines()[0]))
    path = write(tmp_path, "\n".join(lines) + "\n")
    err = error_of(path)
    assert (err.file, err.line, err.key) == (path, len(lines), key)
    err = error_of(None, {key: bad})
    assert (err.file, err.key) == ("command line", key)


@pytest.mark.parametrize("text, expected", [
    ("alerts:\n  overlay_quality: 101\n", "alerts.overlay_quality]: must be 1..100, got 101 (JPEG quality)"),
    ("alerts:\n  overlay_quality: 0\n", "alerts.overlay_quality]: must be 1..100, got 0 (JPEG quality)"),
    ("decision:\n  pixel_low: 2\n",
     "[decision.pixel_low]: must be between 0 and 1, got 2.0 (or null for the manifest's value)"),
    ("mqtt:\n  inflight: 0\n", "[mqtt.inflight]: must be 1 or more, got 0"),
    ("mqtt:\n  topic_prefix: /pneumo\n", "'/pneumo' is not a usable topic prefix"),
    ("models:\n  device_profile: ../nx\n", "'../nx' is not a profile name"),
    ("state_dir: ''\n", "[state_dir]: must not be empty"),
])
def test_limit_messages_say_the_limit_and_the_value(tmp_path, text, expected):
    assert expected in str(error_of(write(tmp_path, text)))


def test_a_rule_spanning_keys_blames_the_key_that_was_set(tmp_path):
    err = error_of(write(tmp_path, "decode:\n  min_side: 9000\n"))
    assert err.key == "decode.min_side" and err.line == 2
    assert "decode.max_side (8192) is smaller than decode.min_side (9000)" in str(err)


def test_choice_lists_are_shared_by_settings_cli_and_logging():
    from edge import cli, logsetup, settings
    assert settings.LOG_LEVELS is logsetup.LEVELS
    assert "CRITICAL" in settings.LOG_LEVELS
    parser = cli.build_parser()
    run = parser._subparsers._group_actions[0].choices["run"]
    actions = {a.dest: a for a in run._actions}
    assert tuple(actions["backend"].choices) == settings.BACKENDS
    assert tuple(actions["log_level"].choices) == settings.LOG_LEVELS


@pytest.mark.parametrize("key", ["site", "device"])
@pytest.mark.parametrize("bad", ["ward/3", "ward+", "#", "", "ward 3", "\x00"])
def test_a_name_that_is_not_one_topic_level_is_refused(key, bad):
    err = error_of(None, {key: bad})
    assert err.key == key and ("may not contain" in str(err) or "must not be empty" in str(err))


def test_overlay_limits_are_the_ones_render_overlay_accepts(tmp_path):
    err = error_of(write(tmp_path, "alerts:\n  overlay_max_side: 15\n"))
    assert err.key == "alerts.overlay_max_side" and "must be 16 or more, got 15" in str(err)
    assert load_config(write(tmp_path, "alerts:\n  overlay_max_side: 16\n  overlay_quality: 1\n"))


def test_the_walker_reads_lists_of_mappings_and_list_values_of_any(tmp_path):
    # models/train_config.py relies on both (data.sources, net.decoder_channels)
    import dataclasses
    from typing import Any, Dict, List

    from edge.strict_yaml import Walker, compose_text

    @dataclasses.dataclass
    class Item:
        kind: str = dataclasses.field(default="", metadata={"required": True, "choices": ("a", "b")})
        size: int = 1

    @dataclasses.dataclass
    class Root:
        items: List[Item] = dataclasses.field(default_factory=list)
        free: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def walk(text):
        root, origins = Root(), {}
        Walker("f.yaml", str(tmp_path), origins, Root).mapping(root, compose_text(text, "f.yaml"), "")
        return root, origins

    root, origins = walk("items:\n  - {kind: a}\n  - kind: b\n    size: 3\nfree: {sizes: [1, 2], n: 4}\n")
    assert root.items == [Item("a", 1), Item("b", 3)] and root.free == {"sizes": [1, 2], "n": 4}
    assert origins["items[1].size"].line == 4
    for text, where in (("items:\n  - {kind: c}\n", "f.yaml:2 [items[0].kind]: 'c' is not allowed"),
                        ("items:\n  - {size: 2}\n", "f.yaml:2 [items[0].kind]: required key 'kind' is missing"),
                        ("items:\n  - {kind: a, sise: 2}\n", "[items[0].sise]: unknown key 'sise'"),
                        ("items: [a]\n", "f.yaml:1 [items[0]]: expected a mapping"),
                        ("items: 3\n", "expected a list of mappings, got an integer 3")):
        with pytest.raises(ConfigError) as err:
            walk(text)
        assert where in str(err.value)
