"""BentoML 1.4 service for the iris example. The model tag is a bento argument:

    bentoml build --arg model_tag=iris_clf:<version>
    bentoml serve . --arg model_tag=iris_clf:<version>

API: POST /predict  {"input": [[sepal_len, sepal_wid, petal_len, petal_wid], ...]}  ->  [class_id, ...]
Health: /livez, /readyz, /healthz, /metrics come from BentoML.

Injected faults (for canary and bake tests), also bento arguments, so a built bento carries them and
`bentoml serve iris_classifier:<version>` (what the agent runs in a slot) behaves the same every time:

    --arg fault_error_rate=0.3                          30 % of /predict requests answer HTTP 500
    --arg fault_delay_ms=300 --arg fault_delay_rate=0.5 half of them take 300 ms longer

The faulty requests are picked by a request counter, spread evenly and deterministically: with rate r,
request n (from 0, per serving process) is faulty when floor((n+1) r) > floor(n r). For r = 0.3 that is
requests 3, 6, 9, 13, 16, 19, ... (exactly 3 of every 10; the first three are healthy); for r = 0.5 it is
every second request from n = 1. Without fault arguments the API is the plain synchronous one.
"""
import asyncio
import threading

import bentoml
import numpy as np
from pydantic import BaseModel, Field


class Args(BaseModel):
    model_tag: str = "iris_clf:latest"
    fault_error_rate: float = Field(0.0, ge=0.0, le=1.0)
    fault_delay_ms: int = Field(0, ge=0, le=60_000)
    fault_delay_rate: float = Field(0.0, ge=0.0, le=1.0)


args = bentoml.use_arguments(Args)
FAULTY = args.fault_error_rate > 0 or (args.fault_delay_ms > 0 and args.fault_delay_rate > 0)


class FaultPicker:
    """Says, request by request, whether this one is among the `rate` share (even spread, thread-safe)."""

    def __init__(self, rate: float) -> None:
        self.permille = round(rate * 1000)
        self.count = 0
        self.lock = threading.Lock()

    def next(self) -> bool:
        with self.lock:
            n = self.count
            self.count += 1
        return (n + 1) * self.permille // 1000 > n * self.permille // 1000


@bentoml.service(resources={"cpu": "1"}, traffic={"timeout": 10}, workers=1)
class IrisClassifier:
    model_ref = bentoml.models.BentoModel(args.model_tag)

    def __init__(self) -> None:
        self.model = bentoml.sklearn.load_model(self.model_ref)
        self.errors = FaultPicker(args.fault_error_rate)
        self.delays = FaultPicker(args.fault_delay_rate if args.fault_delay_ms > 0 else 0.0)

    def _predict(self, input: list[list[float]]) -> list[int]:
        return [int(v) for v in self.model.predict(np.asarray(input, dtype=float))]

    if FAULTY:
        # async so that a delayed request waits without holding the service's one worker thread
        @bentoml.api
        async def predict(self, input: list[list[float]]) -> list[int]:
            if self.delays.next():
                await asyncio.sleep(args.fault_delay_ms / 1000)
            if self.errors.next():
                raise bentoml.exceptions.InternalServerError("injected fault (fault_error_rate)")
            return self._predict(input)
    else:
        @bentoml.api
        def predict(self, input: list[list[float]]) -> list[int]:
            return self._predict(input)
