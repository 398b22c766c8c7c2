"""The bedside display (`pneumo-edge display`): a web page fed by MQTT, with
acknowledge, plus upload-and-predict. Standard-library HTTP + paho-mqtt."""
