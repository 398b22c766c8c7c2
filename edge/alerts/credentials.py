"""Broker credentials and TLS, applied to a paho client.

Secrets come from a file or an environment variable named in config, never
from config itself. They are returned to the caller and handed to paho;
nothing here logs them or puts them in an exception message.
"""
import os
import ssl
from typing import Optional

from edge.errors import AlertError
from edge.logsetup import register_secret
from edge.settings import MqttSettings, TlsSettings


def _from_env(var: str, what: str) -> str:
    value = os.environ.get(var)
    if value is None:
        raise AlertError("%s: environment variable %s is not set" % (what, var))
    return value


def resolve_password(settings: MqttSettings) -> Optional[str]:
    """The MQTT password from mqtt.password_file (trailing newline stripped)
    or from the environment variable named by mqtt.password_env; None if
    neither is configured."""
    if settings.password_file:
        try:
            with open(settings.password_file, "r", encoding="utf-8") as fh:
                return fh.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise AlertError("cannot read the MQTT password file %s: %s (check mqtt.password_file"
                             " and that the runtime's user may read it)"
                             % (settings.password_file, reason))
    if settings.password_env:
        return _from_env(settings.password_env, "mqtt.password_env")
    return None


def resolve_key_password(tls: TlsSettings) -> Optional[str]:
    """The client key's pass phrase from the variable named by tls.key_password_env."""
    if tls.key_password_env:
        return _from_env(tls.key_password_env, "mqtt.tls.key_password_env")
    return None


def configure_client(client, settings: MqttSettings) -> None:
    """Apply username/password and TLS from settings to a paho Client.
    Raises AlertError for unreadable secrets or certificate files, so a bad
    configuration fails at start-up rather than on every reconnect.

    load_config has already refused a password without mqtt.username, half
    a client certificate, and TLS files that do not exist."""
    password = resolve_password(settings)
    key_password = resolve_key_password(settings.tls) if settings.tls.enabled else None
    for secret in (password, key_password):
        register_secret(secret)   # redacted from every log line from now on
    if settings.username:
        client.username_pw_set(settings.username, password)
    tls = settings.tls
    if not tls.enabled:
        return
    try:
        client.tls_set(ca_certs=tls.ca_file or None, certfile=tls.cert_file or None,
                       keyfile=tls.key_file or None,
                       keyfile_password=key_password,
                       cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    except (ssl.SSLError, OSError, ValueError) as exc:
        # ssl errors name the file and the OpenSSL reason, never the pass phrase
        raise AlertError("cannot set up MQTT TLS (ca %s, cert %s, key %s): %s"
                         % (tls.ca_file or "system", tls.cert_file or "none",
                            tls.key_file or "none", exc))
    client.tls_insecure_set(bool(tls.insecure))
