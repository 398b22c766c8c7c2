"""Many carts, one hospital: the mosquitto bridge from a cart's local broker
to the hospital broker, and a throughput benchmark for the broker tier."""
