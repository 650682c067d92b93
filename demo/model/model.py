"""The demo's KServe model server: one model, `demo-model`, that sums each instance.

    python model.py [--http_port 8080] [--bind 127.0.0.1]

V1: POST /v1/models/demo-model:predict  {"instances": [[1, 2, 3], [4, 5]]}
    -> {"predictions": [6.0, 9.0], "caller": {...}}
V2: POST /v2/models/demo-model/infer     one FP32 input of shape [N, M]
    -> one FP32 output `sum` of shape [N], the caller in `parameters`

The answer says who called: the identity headers the gateway set from the verified token
(`x-jwt-sub`, `x-jwt-client`), and whether an Authorization header reached the model (its value
is never read or echoed). Behind the kserve-auth filter it reads "absent": the model sees who
is calling, never the token.
"""

import argparse
import uuid

import kserve
import kserve.model_server
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.logging import logger
from kserve.protocol.rest.server import RESTServer

MODEL_NAME = "demo-model"
IDENTITY_HEADERS = ("x-jwt-sub", "x-jwt-client")


class BadInput(ValueError):
    """The request's instances are not lists of numbers."""


def caller(headers):
    """The identity headers received, and whether a token reached the model."""
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    found = {name: lowered.get(name) for name in IDENTITY_HEADERS}
    found["authorization"] = "present" if "authorization" in lowered else "absent"
    return found


def row_sums(rows):
    """The sum of each row; every row must be a list of numbers."""
    if not isinstance(rows, list):
        raise BadInput("instances must be a list of lists of numbers")
    sums = []
    for row in rows:
        if not isinstance(row, list) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in row
        ):
            raise BadInput("each instance must be a list of numbers")
        sums.append(float(sum(row)))
    return sums


class DemoModel(Model):
    """Sums each instance; reports the caller's identity headers."""

    def __init__(self, name: str):
        super().__init__(name)
        self.load()

    def load(self) -> bool:
        self.ready = True
        return self.ready

    async def predict(self, payload, headers=None, response_headers=None):
        who = caller(headers)
        logger.info(
            "predict from sub=%s client=%s (Authorization header %s)",
            who["x-jwt-sub"],
            who["x-jwt-client"],
            who["authorization"],
        )
        if isinstance(payload, InferRequest):
            return self.infer_v2(payload, who)
        if not isinstance(payload, dict) or "instances" not in payload:
            raise kserve.errors.InvalidInput('expected {"instances": [[...], ...]}')
        try:
            return {"predictions": row_sums(payload["instances"]), "caller": who}
        except BadInput as error:
            raise kserve.errors.InvalidInput(str(error)) from error

    def infer_v2(self, request: InferRequest, who) -> InferResponse:
        if len(request.inputs) != 1:
            raise kserve.errors.InvalidInput("expected exactly one input tensor")
        tensor = request.inputs[0]
        if len(tensor.shape) != 2:
            raise kserve.errors.InvalidInput("expected an input of shape [N, M]")
        rows, columns = tensor.shape
        data = tensor.data
        if len(data) != rows * columns:
            raise kserve.errors.InvalidInput("data does not match the shape")
        try:
            sums = row_sums([list(data[i * columns : (i + 1) * columns]) for i in range(rows)])
        except BadInput as error:
            raise kserve.errors.InvalidInput(str(error)) from error
        output = InferOutput(name="sum", shape=[rows], datatype="FP32", data=sums)
        parameters = {f"caller_{name.replace('-', '_')}": value or "" for name, value in who.items()}
        return InferResponse(
            response_id=request.id or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=[output],
            parameters=parameters,
        )


def listen_on(host):
    """Makes kserve's REST server listen on `host`.

    kserve 0.21 always binds 0.0.0.0. In a container that is what we want; on a developer's
    machine the model must be reachable through Envoy only, so the demo binds 127.0.0.1.
    """

    class BoundRESTServer(RESTServer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.config.host = host

    kserve.model_server.RESTServer = BoundRESTServer


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    args, _ = parser.parse_known_args()
    listen_on(args.bind)
    server = ModelServer(http_port=args.http_port, workers=1, enable_grpc=False)
    server.start([DemoModel(MODEL_NAME)])
