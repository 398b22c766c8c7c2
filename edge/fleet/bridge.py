"""The mosquitto bridge from a cart's local broker to the hospital broker.

The appliance publishes to the broker on the cart (so bedside displays work
with no hospital network); the bridge forwards this cart's topics to the
hospital broker and brings acknowledgements back:

    out  <prefix>/<site>/<device>/{alert,status,event,overlay/#}   QoS 1
    in   <prefix>/<site>/<device>/ack                               QoS 1

cleansession false: the hospital broker keeps the bridge's session (its "in"
subscription and QoS 1 messages in flight) across disconnects, and the cart's
broker queues "out" messages while the hospital side is away; persistence
(with a save after every change) keeps that queue across a broker restart.
Leaves are listed one by one rather than "<base>/#" so an ack that came in is
never sent back out.

    python -m edge.fleet.bridge --config /etc/pneumo-edge/config.yaml \\
        --remote mqtt.hospital.example:8883 --remote-cafile /etc/mosquitto/hospital-ca.crt \\
        > /etc/mosquitto/conf.d/pneumo-bridge.conf
"""
import argparse
import sys
from typing import List, Optional

from edge.alerts.topics import Topics

OUT_LEAVES = ("alert", "status", "event", "overlay/#")
IN_LEAVES = ("ack",)          # displays at the hospital acknowledge here (Topics.ack)


def bridge_lines(topics: Topics, remote_host: str, remote_port: int, *,
                 cafile: str = "", certfile: str = "", keyfile: str = "",
                 username: str = "", restart_min_s: int = 1, restart_max_s: int = 30) -> List[str]:
    """The connection section for mosquitto.conf (or a conf.d file)."""
    name = "pneumo-%s-%s" % (topics.site, topics.device)
    lines = [
        "connection %s" % name,
        "address %s:%d" % (remote_host, remote_port),
        "bridge_protocol_version mqttv311",
        "remote_clientid %s" % name,
        "local_clientid %s-local" % name,
        "cleansession false",
        "start_type automatic",
        "restart_timeout %d %d" % (restart_min_s, restart_max_s),
        "keepalive_interval 30",
        "try_private true",
        "notifications true",
        "notification_topic %s/bridge" % topics.base,     # retained 1/0: is this cart's bridge up?
        "queue_qos0_messages false",
    ]
    lines += ["topic %s/%s out 1" % (topics.base, leaf) for leaf in OUT_LEAVES]
    lines += ["topic %s/%s in 1" % (topics.base, leaf) for leaf in IN_LEAVES]
    if cafile:
        lines.append("bridge_cafile %s" % cafile)
    if certfile:
        lines += ["bridge_certfile %s" % certfile, "bridge_keyfile %s" % keyfile]
    if username:
        lines.append("remote_username %s" % username)   # remote_password goes in by hand (chmod 600)
    return lines


def broker_lines(persistence_dir: Optional[str] = None, max_queued: int = 100000) -> List[str]:
    """Global options the bridge relies on: a queue that survives a restart and is
    big enough for a long hospital outage (mosquitto's default is 1000 messages)."""
    lines = ["persistence true", "autosave_on_changes true", "autosave_interval 1",
             "max_queued_messages %d" % max_queued]
    if persistence_dir:
        lines.insert(1, "persistence_location %s/" % persistence_dir.rstrip("/"))
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edge.fleet.bridge",
                                 description="print a mosquitto bridge config for this cart")
    ap.add_argument("--config", help="the appliance's YAML (site, device, topic prefix)")
    ap.add_argument("--remote", required=True, metavar="HOST:PORT", help="the hospital broker")
    ap.add_argument("--remote-cafile", default="", help="CA of the hospital broker's certificate (TLS)")
    ap.add_argument("--remote-certfile", default="", help="this cart's client certificate, if asked for")
    ap.add_argument("--remote-keyfile", default="")
    ap.add_argument("--remote-username", default="")
    ap.add_argument("--persistence-dir", default="/var/lib/mosquitto")
    args = ap.parse_args(argv)
    from edge.config import load_config
    settings = load_config(args.config)
    host, _, port = args.remote.rpartition(":")
    if not host or not port.isdigit():
        ap.error("--remote must be HOST:PORT")
    topics = Topics(settings.mqtt.topic_prefix, settings.site, settings.device)
    out = ["# pneumo-edge bridge: %s -> %s (python -m edge.fleet.bridge)" % (topics.base, args.remote)]
    out += broker_lines(args.persistence_dir)
    out += [""] + bridge_lines(topics, host, int(port), cafile=args.remote_cafile,
                               certfile=args.remote_certfile, keyfile=args.remote_keyfile,
                               username=args.remote_username)
    if args.remote_username:
        out.append("# remote_password <the password>   (mosquitto reads it only from here; chmod 600)")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
