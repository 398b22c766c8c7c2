"""`pneumo-edge` and `python -m build_engine` as a user runs them: one line per error, a
documented exit code, help that says what each flag does."""
import argparse
import os
import re
import subprocess
import sys

import pytest

from edge.cli import EXIT_CODES_HELP, build_parser, watch_command
from edge.config import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRODUCTION = os.path.join(ROOT, "config", "production.yaml")


def cli(*args, module="edge.cli", timeout=120):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", module] + list(args), cwd=ROOT, env=env, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)


def documented_codes(help_text):
    block = help_text[help_text.index("exit codes:"):]
    return {int(m) for m in re.findall(r"^\s+(\d+)\s", block, re.M)}


def one_error_line(result):
    lines = [l for l in result.stderr.splitlines() if "error" in l]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("target, why", [("/nonexistent.png", "no such file"), ("tests", "is a directory")])
def test_process_of_a_missing_file_or_a_folder_is_one_line_and_a_documented_code(target, why):
    r = cli("process", target)
    line = one_error_line(r)
    assert target in line and why in line
    assert r.returncode == 3 and 3 in documented_codes(cli("process", "--help").stdout)


@pytest.mark.parametrize("args, code", [
    (("check-config", "/nonexistent.yaml"), 2),
    (("run", "--config", "/nonexistent.yaml"), 2),
    (("alerts", "--filter", "a/b/c", "--timeout", "0.1"), 5),
    (("process", "--backend", "tensorrt", "README.md"), 4),
    (("run", "--capture-dir", "/proc/no/such", "--state-dir", "/proc/no/state", "--mqtt-port", "1"), 6),
])
def test_every_error_path_is_one_line_with_a_documented_code(args, code):
    r = cli(*args)
    one_error_line(r)
    assert r.returncode == code
    assert code in documented_codes(cli(args[0], "--help").stdout)


def test_every_command_documents_the_exit_codes():
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("run", "alerts", "check-config", "process", "doctor"):
        assert "exit codes:" in subs.choices[name].format_help(), name
    assert documented_codes(parser.format_help()) == documented_codes(EXIT_CODES_HELP) >= {0, 1, 2, 3, 130}


def test_help_says_what_each_argument_is_and_lists_only_flags_a_command_uses():
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser_ in subs.choices.items():
        if name == "bench":
            continue
        for action in parser_._actions:
            assert action.help, "%s %s has no help" % (name, action.dest)
    process = subs.choices["process"].format_help()
    for unused in ("--capture-dir", "--state-dir", "--mqtt-host", "--mqtt-port"):
        assert unused not in process
    alerts = subs.choices["alerts"].format_help()
    assert "--mqtt-host" in alerts and "--capture-dir" not in alerts and "--backend" not in alerts


def test_build_engine_help_lists_its_commands_and_exit_codes():
    r = cli("--help", module="build_engine")
    assert r.returncode == 0
    assert "ensure" in r.stdout and "selftest" in r.stdout and "exit codes" in r.stdout.lower()
    for sub in ("ensure", "selftest"):
        r = cli(sub, "--help", module="build_engine")
        assert r.returncode == 0 and "--help" not in r.stderr
        assert "None" not in r.stdout     # every option has help text


def test_check_config_offline_checks_all_but_the_files_and_names_them():
    r = cli("check-config", PRODUCTION)
    assert r.returncode == 2 and "does not exist" in one_error_line(r)
    r = cli("check-config", "--offline", PRODUCTION)
    assert r.returncode == 0, r.stderr
    assert "offline: 4 file(s) not checked" in r.stdout
    not_checked = r.stdout[r.stdout.index("not checked ("):]
    for key, path in (("mqtt.password_file", "/etc/pneumo-edge/mqtt.password"),
                      ("mqtt.tls.ca_file", "/etc/pneumo-edge/tls/ca.crt"),
                      ("mqtt.tls.key_file", "/etc/pneumo-edge/tls/client.key")):
        assert key in not_checked and path in not_checked


def test_check_config_offline_still_finds_every_other_mistake(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(open(PRODUCTION).read().replace("port: 8883", "port: 88830"))
    r = cli("check-config", "--offline", str(bad))
    assert r.returncode == 2 and "mqtt.port" in one_error_line(r)


def test_watch_hint_carries_the_config_when_tls_and_auth_are_configured(tmp_path):
    args = build_parser().parse_args(["run", "--config", PRODUCTION])
    settings = load_config(PRODUCTION, check_files=False)
    hint = watch_command(settings, args)
    assert "alerts --config %s" % PRODUCTION in hint
    args = build_parser().parse_args(["run", "--config", PRODUCTION, "--mqtt-port", "9999"])
    assert hint + " --mqtt-port 9999" == watch_command(settings, args)
    args = build_parser().parse_args(["run"])
    plain = watch_command(load_config(None), args)
    assert plain.endswith("alerts --mqtt-host 127.0.0.1 --mqtt-port 1883") and "--config" not in plain


def test_process_reports_a_film_the_gate_refuses_and_goes_on_to_the_next(tmp_path):
    import json
    import numpy as np
    from tests.dicom_factory import write_dicom
    pixels = (np.random.default_rng(0).random((512, 512)) * 4000).astype(np.uint16)
    foot = write_dicom(str(tmp_path / "foot.dcm"), pixels, modality="CR", body_part="FOOT")
    chest = write_dicom(str(tmp_path / "chest.dcm"), pixels, modality="DX", body_part="CHEST")
    r = cli("process", "--compact", foot, chest)
    assert "Traceback" not in r.stderr
    lines = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
    assert lines[0] == {"file": foot, "rejected": "not_a_chest_radiograph", "reason": lines[0]["reason"]}
    assert len(lines) == 2 and lines[1].get("file") != foot     # the next film was still read
    assert r.returncode == 3
