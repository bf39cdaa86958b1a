"""BentoML 1.4 service for the iris example. The model tag is a bento argument:

    bentoml build --arg model_tag=iris_clf:<version>
    bentoml serve . --arg model_tag=iris_clf:<version>

API: POST /predict  {"input": [[sepal_len, sepal_wid, petal_len, petal_wid], ...]}  ->  [class_id, ...]
Health: /livez, /readyz, /healthz, /metrics come from BentoML.
"""
import bentoml
import numpy as np
from pydantic import BaseModel


class Args(BaseModel):
    model_tag: str = "iris_clf:latest"


args = bentoml.use_arguments(Args)


@bentoml.service(resources={"cpu": "1"}, traffic={"timeout": 10}, workers=1)
class IrisClassifier:
    model_ref = bentoml.models.BentoModel(args.model_tag)

    def __init__(self) -> None:
        self.model = bentoml.sklearn.load_model(self.model_ref)

    @bentoml.api
    def predict(self, input: list[list[float]]) -> list[int]:
        return [int(v) for v in self.model.predict(np.asarray(input, dtype=float))]
