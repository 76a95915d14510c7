"""Training that starts from existing weights (a shipped model directory or a state dict)."""

from __future__ import annotations

from pathlib import Path

import torch

from cephspine.pipeline import StageConfig
from cephspine.training.ceph import init_state, train_refine
from cephspine.training.export import write_model_dir
from tests.conftest import tiny_card


def test_init_state_reads_each_stage_of_a_model_directory(tmp_path: Path, tiny_config: StageConfig) -> None:
    torch.manual_seed(0)
    coarse, refine = tiny_config.build_coarse(), tiny_config.build_refine()
    write_model_dir(tmp_path / "model", coarse.state_dict(), refine.state_dict(), tiny_card(tiny_config))
    for stage, net in (("coarse", coarse), ("refine", refine)):
        st = init_state(tmp_path / "model", stage)
        assert set(st) == set(net.state_dict())
        for k, v in net.state_dict().items():
            assert st[k].dtype == v.dtype  # fp16 on disk, float32 again here
            torch.testing.assert_close(st[k], v, atol=1e-3, rtol=1e-3)
    torch.save(refine.state_dict(), tmp_path / "refine_final.pt")
    assert set(init_state(tmp_path / "refine_final.pt")) == set(refine.state_dict())


def test_refinement_training_starts_from_given_weights(tmp_path: Path, tiny_config: StageConfig) -> None:
    torch.manual_seed(0)
    refine = tiny_config.build_refine()
    write_model_dir(tmp_path / "model", tiny_config.build_coarse().state_dict(), refine.state_dict(),
                    tiny_card(tiny_config))  # fmt: skip
    # no steps: the saved network is the one it started from (a fresh seed-1 network otherwise)
    out = train_refine(None, tiny_config, tmp_path / "run", steps=0, init=tmp_path / "model")  # type: ignore[arg-type]
    saved = torch.load(out, weights_only=True)
    fresh = train_refine(None, tiny_config, tmp_path / "fresh", steps=0)  # type: ignore[arg-type]
    first = next(k for k, v in refine.state_dict().items() if v.is_floating_point())
    torch.testing.assert_close(saved[first], refine.state_dict()[first], atol=1e-3, rtol=1e-3)
    assert not torch.allclose(torch.load(fresh, weights_only=True)[first], refine.state_dict()[first])
