"""The camera service (``adplg serve``): many cameras in one process, one shared backbone, events on every output
(JSON lines, snapshots, webhook, MQTT, clips), health and Prometheus metrics over HTTP."""
