from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from serving.config import DEFAULT_CONFIG, load_config, parse_config
from serving.errors import ConfigError


def _raw() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def test_default_config_is_valid_and_fits_two_cores() -> None:
    cfg = load_config()
    assert set(cfg.pipelines) >= {"inspect", "clip"}
    # Every replica of the default graph reserves a fraction of a CPU, so it schedules on 2.
    total = cfg.ingress.num_cpus
    for spec in cfg.models.values():
        total += spec.deployment.num_cpus * len(spec.versions) * spec.deployment.num_replicas
    assert total <= 2.0
    assert all(m.runtime.intra_op_num_threads >= 1 for m in cfg.models.values())


def test_unknown_op_is_quoted() -> None:
    raw = _raw()
    raw["pipelines"]["inspect"]["nodes"][0]["op"] = "detekt"
    with pytest.raises(ConfigError) as e:
        parse_config(raw)
    assert "'detekt'" in e.value.message and "pipelines.inspect" in e.value.message


def test_input_must_be_an_earlier_node() -> None:
    raw = _raw()
    nodes = raw["pipelines"]["inspect"]["nodes"]
    nodes[1]["inputs"] = ["later"]
    with pytest.raises(ConfigError, match="'later' is not the pipeline input or an earlier"):
        parse_config(raw)


def test_kind_mismatch_is_refused() -> None:
    raw = _raw()
    raw["pipelines"]["inspect"]["nodes"][1]["inputs"] = ["image"]  # persons needs detections
    with pytest.raises(ConfigError, match="gives 'image' but op 'persons' needs 'detections'"):
        parse_config(raw)


def test_model_task_must_match_op() -> None:
    raw = _raw()
    raw["pipelines"]["inspect"]["nodes"][0]["model"] = "ocr"
    with pytest.raises(ConfigError, match="needs a detection model, 'ocr' is ocr"):
        parse_config(raw)


def test_unknown_model_in_node() -> None:
    raw = _raw()
    raw["pipelines"]["inspect"]["nodes"][0]["model"] = "yolo"
    with pytest.raises(ConfigError, match="model 'yolo' is not in models"):
        parse_config(raw)


def test_bad_values_are_quoted() -> None:
    raw = _raw()
    raw["models"]["detector"]["deployment"]["num_cpus"] = -1
    raw["models"]["ocr"]["batching"] = {"max_batch_size": "lots"}
    with pytest.raises(ConfigError) as e:
        parse_config(raw)
    msg = e.value.message
    assert "models.detector.deployment.num_cpus" in msg and "-1" in msg
    assert "'lots'" in msg


def test_extra_keys_are_refused() -> None:
    raw = _raw()
    raw["models"]["detector"]["replicas"] = 3
    with pytest.raises(ConfigError, match=r"models\.detector\.replicas"):
        parse_config(raw)


def test_autoscaling_bounds() -> None:
    raw = _raw()
    raw["models"]["detector"]["deployment"]["autoscaling"] = {"min_replicas": 3, "max_replicas": 1}
    with pytest.raises(ConfigError, match=r"max_replicas \(1\) < min_replicas \(3\)"):
        parse_config(raw)


def test_autoscaling_options_reach_ray() -> None:
    raw = _raw()
    raw["models"]["detector"]["deployment"] = {
        "num_cpus": 0.25,
        "num_gpus": 0.5,
        "autoscaling": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 1},
    }
    opts = parse_config(raw).models["detector"].deployment.ray_options()
    assert opts["ray_actor_options"] == {"num_cpus": 0.25, "num_gpus": 0.5}
    assert opts["autoscaling_config"]["max_replicas"] == 4
    assert "num_replicas" not in opts


def test_op_params_are_validated() -> None:
    raw = _raw()
    raw["pipelines"]["clip"]["nodes"][3]["params"] = {"labels": []}
    with pytest.raises(ConfigError, match="bad params"):
        parse_config(raw)


def test_duplicate_node_name() -> None:
    raw = _raw()
    nodes = raw["pipelines"]["inspect"]["nodes"]
    nodes.append(copy.deepcopy(nodes[0]))
    with pytest.raises(ConfigError, match="'detect' is used twice"):
        parse_config(raw)


def test_output_must_name_a_node() -> None:
    raw = _raw()
    raw["pipelines"]["inspect"]["output"]["extra"] = "nowhere"
    with pytest.raises(ConfigError, match=r"output\.extra: 'nowhere' is not a node"):
        parse_config(raw)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_overrides_merge() -> None:
    cfg = load_config(None, {"server": {"port": 9100}})
    assert cfg.server.port == 9100 and cfg.server.host == "127.0.0.1"
