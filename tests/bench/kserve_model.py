"""KServe's Python model server on one xgboost booster, for the side-by-side serving figures. Not a test.

Runs in its own environment (``make bench`` builds ``.bench/kserve``: ``kserve==0.21.*`` and
xgboost), started by ``tests/bench/serving.py``::

    .bench/kserve/bin/python tests/bench/kserve_model.py --model-file model.json --name bench-xgb --port 8080

A ``kserve.Model`` the way KServe's own xgboost runtime (``xgbserver``) is written: ``load``
reads the booster, ``predict`` scores a DMatrix; the request and response are decoded and
encoded by KServe's ``get_predict_input``/``get_predict_response``, so it answers both v1
(``POST /v1/models/<name>:predict`` with ``{"instances": [[...]]}``) and v2
(``POST /v2/models/<name>/infer`` with one ``[n, k]`` FP64 tensor). One uvicorn worker, gRPC
off, KServe's defaults otherwise. It imports nothing from modelyard: that is not installed here.
"""

from __future__ import annotations

import argparse
from typing import Any

import kserve
import xgboost as xgb
from kserve.utils.utils import get_predict_input, get_predict_response


class BoosterModel(kserve.Model):
    """One xgboost booster (its saved JSON), scored with one thread."""

    def __init__(self, name: str, model_file: str) -> None:
        super().__init__(name)
        self.model_file = model_file
        self.booster: xgb.Booster | None = None

    def load(self) -> bool:
        self.booster = xgb.Booster(params={"nthread": 1}, model_file=self.model_file)
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        assert self.booster is not None, "predict before load"
        # The columns come by position: name them as the booster was trained (an MLflow model keeps its names).
        matrix = xgb.DMatrix(get_predict_input(payload), feature_names=self.booster.feature_names, nthread=1)
        return get_predict_response(payload, self.booster.predict(matrix), self.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-file", required=True, help="the booster saved as JSON")
    parser.add_argument("--name", default="bench-xgb")
    parser.add_argument("--port", type=int, required=True)
    args, _ = parser.parse_known_args()
    model = BoosterModel(args.name, args.model_file)
    model.load()
    kserve.ModelServer(http_port=args.port, workers=1, enable_grpc=False).start([model])


if __name__ == "__main__":
    main()
