"""Train a tiny iris classifier and save it into the BentoML model store ($BENTOML_HOME).

Usage: python train.py {v1|v2|broken|flaky|slow}

Kinds (deterministic; see README.md for the smoke-test answers):
  v1      DecisionTreeClassifier(random_state=0) on iris; predicts the class id 0, 1 or 2.
  v2      The same tree trained on class id + 10; predicts 10, 11 or 12 for the same inputs.
  broken  A tree fitted on 5 features: it loads, but every predict on 4-feature input raises,
          so the service answers HTTP 500 and the smoke test fails.
  flaky   The v1 tree trained on class id + 20 (predicts 20, 21 or 22); build.sh builds its bento with
          fault_error_rate=0.3, so 30 % of its requests answer HTTP 500 (see service.py).
  slow    The v1 tree trained on class id + 30 (predicts 30, 31 or 32); build.sh builds its bento with
          fault_delay_ms=300 and fault_delay_rate=0.5: half of its requests take 300 ms longer.

Prints the saved model tag on the last line of stdout as `iris_clf:<version>`.
"""
import sys

import bentoml
import numpy as np
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

OFFSETS = {"v1": 0, "v2": 10, "flaky": 20, "slow": 30}


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in ("v1", "v2", "broken", "flaky", "slow"):
        sys.exit("usage: train.py {v1|v2|broken|flaky|slow}")
    kind = sys.argv[1]
    iris = load_iris()
    x, y = iris.data, iris.target
    if kind == "broken":
        x = np.hstack([x, np.zeros((x.shape[0], 1))])
        offset = 0
    else:
        offset = OFFSETS[kind]
    model = DecisionTreeClassifier(random_state=0).fit(x, y + offset)
    saved = bentoml.sklearn.save_model(
        "iris_clf",
        model,
        labels={"kind": kind, "owner": "examples"},
        metadata={"kind": kind, "class_offset": offset, "n_features": int(x.shape[1]),
                  "train_accuracy": float(model.score(x, y + offset))},
    )
    print(saved.tag)


if __name__ == "__main__":
    main()
