"""The model registry: versioned model directories, their manifests, and the reference models.

store               ModelRef, ModelVersionInfo and the abstract ModelStore (no MLflow here)
manifest            manifest.yaml: task, input, labels, pre/post-processing, runtimes, lineage
settings            where state lives: the data dir, the MLflow tracking/registry URI
mlflow_store        MlflowModelStore, the MLflow adapter (the one module that imports mlflow)
mlflow_layout       what canaryserve writes where in MLflow (experiment, runs, tags), read back
drift_reference     frozen drift references: a Parquet artifact per version, sha256-checked
local_copy          verified local copies of versions under the models dir
validate            checks a model directory passes before it is registered
wheels              fetches files out of PyPI wheels without installing them
references/         the reference models the project builds itself, and the bootstrap

Submodules are not imported here: mlflow, torch and onnx load only where they are used.
"""

__all__ = [
    "drift_reference",
    "local_copy",
    "manifest",
    "mlflow_layout",
    "mlflow_store",
    "references",
    "settings",
    "store",
    "validate",
    "wheels",
]
