#!/bin/sh
# First boot (and every boot): build TensorRT engines that are missing or no longer
# match this device/model (sidecar check), then hand over to the appliance.
# A failed build stops here: running with a wrong or missing engine is not an option.
set -eu

CONFIG="${PNEUMO_EDGE_CONFIG:-/etc/pneumo-edge/config.yaml}"
CONFIG_ARGS=""
if [ -f "$CONFIG" ]; then
    CONFIG_ARGS="--config $CONFIG"
fi

case "${1:-run}" in
    run)
        if [ "${PNEUMO_EDGE_SKIP_ENGINES:-0}" != "1" ]; then
            echo "pneumo-edge: checking TensorRT engines (status: building-engines while any is built)"
            # shellcheck disable=SC2086
            python3 -m build_engine ensure $CONFIG_ARGS
        fi
        # shellcheck disable=SC2086
        exec pneumo-edge run $CONFIG_ARGS
        ;;
    *)
        exec "$@"
        ;;
esac
