"""The display: and alerts.escalate_after_s settings are validated like the rest."""
import pytest

from edge.config import load_config
from edge.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "edge.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text,key,line", [
    ("display:\n  port: 70000\n", "display.port", 2),
    ("display:\n  history: 0\n", "display.history", 2),
    ("display:\n  stale_after_s: 0\n", "display.stale_after_s", 2),
    ("display:\n  sites: [ward/4]\n", "display.sites", 2),
    ("display:\n  sites: ['']\n", "display.sites", 2),
    ("display:\n  tls:\n    cert_file: a.crt\n", "display.tls.cert_file", 3),
    ("alerts:\n  escalate_after_s: -1\n", "alerts.escalate_after_s", 2),
    ("display:\n  colour: red\n", "display.colour", 2),
])
def test_bad_display_settings_name_file_line_and_key(tmp_path, text, key, line):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == key and err.value.file == path and err.value.line == line


def test_display_settings_load_and_paths_resolve_against_the_file(tmp_path):
    s = load_config(write(tmp_path, "display:\n  host: 0.0.0.0\n  port: 8443\n  sites: [ward-4, '+']\n"
                                    "  token_file: token\n  tls:\n    cert_file: d.crt\n    key_file: d.key\n"
                                    "alerts:\n  escalate_after_s: 0\n  overlay_region: true\n"))
    assert (s.display.host, s.display.port, s.display.sites) == ("0.0.0.0", 8443, ["ward-4", "+"])
    assert s.display.token_file == str(tmp_path / "token")
    assert s.display.tls.key_file == str(tmp_path / "d.key")
    assert s.alerts.escalate_after_s == 0 and s.alerts.overlay_region is True
