"""Examples for integrators. ``reference_client`` streams a WAV file over
the WebSocket protocol (docs/protocol.md) using only the REST API and
``websockets``: ``python -m examples.reference_client --help``."""
