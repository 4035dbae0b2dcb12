"""Damaged run files end in a clear error naming the file, never a deep library traceback."""

import pytest
import torch

from prerec_pyro.inference.checkpoint import load_checkpoint, load_json, save_checkpoint, save_json


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_checkpoint_is_named(tmp_path, damage):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.arange(1000.0)}})
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint" * 10, "empty": b""}[damage])
    with pytest.raises(ValueError, match=r"last\.pt: checkpoint is truncated or corrupt"):
        load_checkpoint(path)


def test_a_damaged_json_is_named(tmp_path):
    path = tmp_path / "config.json"
    save_json(path, {"a": 1})
    assert load_json(path) == {"a": 1}
    path.write_text('{"a": ')
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON"):
        load_json(path)
