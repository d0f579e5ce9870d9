"""The Open Inference Protocol (v2) over REST, beside ``/v1`` on the same server and port.

* ``tensors``: v2 infer requests (JSON, or the binary tensor extension's inputs) to records,
  and the prediction to an output tensor;
* ``metadata``: v2 model names (``<family>-<region>`` or the registered model name), what a
  version takes (its raw fields as typed tensors) and gives;
* ``infer``: ``POST /v2/models/{name}[/versions/{v}]/infer`` through the plan, like ``/v1``;
* ``routes``: every ``/v2`` path, ``GET /openapi.json`` and ``GET /v1/models/{family}/{region}``.
"""
