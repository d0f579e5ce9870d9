"""The serving pod: plan, model runtime, router, batching, HTTP server, metrics (the ``[serving]`` extra)."""
