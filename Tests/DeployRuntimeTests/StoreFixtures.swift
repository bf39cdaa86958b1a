import DeployRuntime
import JSON
import Testing

/// Real files written by BentoML 1.4.40 for examples/iris (build.sh).
enum StoreFixtures {
    static let modelYAML = #"""
name: iris_clf
version: 4zmgrtxl5ozgcax4
module: bentoml.sklearn
labels:
  kind: v1
  owner: examples
options: {}
metadata:
  kind: v1
  class_offset: 0
  n_features: 4
  train_accuracy: 1.0
context:
  framework_name: sklearn
  framework_versions:
    scikit-learn: 1.9.1
  bentoml_version: 1.4.40
  python_version: 3.11.7
signatures:
  predict:
    batchable: false
api_version: v1
creation_time: '2026-11-29T11:56:23.959918+00:00'
"""#

    static let bentoYAML = #"""
service: service:IrisClassifier
name: iris_classifier
version: 44bjszxl5o2ocax4
bentoml_version: 1.4.40
creation_time: '2026-11-29T11:56:25.148673+00:00'
labels:
  owner: examples
  project: model-deployer
  model_kind: v1
models: []
entry_service: IrisClassifier
services:
- name: IrisClassifier
  service: ''
  models:
  - tag: iris_clf:4zmgrtxl5ozgcax4
    module: bentoml.sklearn
    creation_time: '2026-11-29T11:56:23.959918+00:00'
  dependencies: []
  config:
    resources:
      cpu: '1'
    traffic:
      timeout: 10
    workers: 1
envs: []
schema:
  name: IrisClassifier
  type: service
  routes:
  - name: predict
    route: /predict
    batchable: false
    input:
      properties:
        input:
          items:
            items:
              type: number
            type: array
          title: Input
          type: array
      required:
      - input
      title: Input
      type: object
    output:
      items:
        type: integer
      type: array
    is_task: false
  paths:
    /predict:
      mounted: false
args:
  model_tag: iris_clf:4zmgrtxl5ozgcax4
spec: 2
image:
  base_image: python:3.11-slim
  python_version: '3.11'
  commands:
  - apt-get update && apt-get install -q -y --no-install-recommends --allow-remove-essential
    ca-certificates gnupg2 bash build-essential git
  python_requirements: 'scikit-learn

    numpy

    bentoml==1.4.40

    '
  post_commands: []
  build_include: []
"""#
}
