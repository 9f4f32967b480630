"""Training an ensemble (``TrainConfig(members=K)``): each member on its own loss, chosen with a time budget."""

from __future__ import annotations

import pytest
import torch

from napari_seamless_unet.core.model_io import load_model
from napari_seamless_unet.core.train import TrainConfig, resolve_defaults, train


def test_each_member_learns_on_its_own_loss(discs, tiny, tmp_path, monkeypatch):
    from napari_seamless_unet.core.train import loop

    losses = []
    original = loop.weighted_loss

    def recording(logits, target, weight):
        loss = original(logits, target, weight)
        losses.append(float(loss.detach()))
        return loss

    monkeypatch.setattr(loop, "weighted_loss", recording)
    path = tmp_path / "ensemble.unet.pt"
    result = train(*discs, config=tiny(steps=3, members=2, save_path=str(path)))
    assert result.model.members == 2 and result.settings["members"] == 2
    assert "members" not in result.settings["automatic"]
    # two losses a step, one per member; the step's loss is their mean
    assert len(losses) == 6
    assert result.history["loss"] == pytest.approx([(a + b) / 2 for a, b in zip(losses[::2], losses[1::2])])
    saved = load_model(path)
    assert saved.members == 2 and saved.metadata["history"]["settings"]["members"] == 2
    # resumed and fine-tuned runs keep the ensemble they continue
    resumed = train(*discs, config=TrainConfig(resume_from=str(path), steps=1, device="cpu"))
    assert resumed.model.members == 2
    tuned = train(*discs, config=tiny(steps=1, members=None), init=result.model)
    assert tuned.model.members == 2


def test_a_single_network_is_the_default_without_a_time_budget(discs, tiny):
    result = train(*discs, config=tiny(steps=1))
    assert result.model.members == 1 and result.settings["members"] == 1
    assert "members" in result.settings["automatic"]


def test_a_time_budget_that_buys_many_steps_trains_more_members(monkeypatch):
    """The network is chosen as before; what the budget buys beyond MEMBER_STEPS steps of it goes to members."""
    from napari_seamless_unet.core.train import defaults

    cost = {2: 0.005, 3: 0.0156, 4: 0.2}  # bare steps; whole steps are STEP_OVERHEAD (1.5) times these
    monkeypatch.setattr(defaults, "_step_seconds", lambda base, depth, *a, **k: cost[depth])
    monkeypatch.setattr(defaults, "cpu_has_native_bf16", lambda: False)
    cpu, planes = torch.device("cpu"), [(512, 512)]
    # 600 s: depth 3 (0.0234 s whole steps, 25600 of them) -> 5 members' worth, at most MAX_MEMBERS
    # 100 s: depth 2 (0.0075 s, 13300 steps) -> 2; 30 s: 4000 steps -> 1
    for budget, depth, members in ((600, 3, 2), (100, 2, 2), (30, 2, 1)):
        config, settings = resolve_defaults(TrainConfig(task="semantic", time_budget=budget), cpu, planes)
        assert (config.depth, config.members) == (depth, members), budget
        assert settings["members"] == members and "members" in settings["automatic"]
    # the user's count wins; instances (measured worse as an ensemble), a network given (not timed), a step
    # count or 3D: one member
    semantic = {"task": "semantic", "time_budget": 600}
    assert resolve_defaults(TrainConfig(**semantic, members=1), cpu, planes)[0].members == 1
    assert resolve_defaults(TrainConfig(**semantic, members=3), cpu, planes)[0].members == 3
    for given in (
        TrainConfig(time_budget=600),
        TrainConfig(**semantic, depth=3),
        TrainConfig(task="semantic", time_budget=600, steps=100),
    ):
        assert resolve_defaults(given, cpu, planes)[0].members == 1, given
    three_d = resolve_defaults(TrainConfig(**{**semantic, "time_budget": 1e5}, ndim=3), cpu, [(64, 256, 256)])[0]
    assert three_d.members == 1


def test_members_for_budget():
    from napari_seamless_unet.core.train.defaults import MAX_MEMBERS, MEMBER_STEPS, members_for_budget

    assert members_for_budget(100, 100 / MEMBER_STEPS) == 1
    assert members_for_budget(100, 100 / (2 * MEMBER_STEPS)) == 2
    assert members_for_budget(100, 100 / (2 * MEMBER_STEPS) * 1.01) == 1
    assert members_for_budget(1e9, 0.001) == MAX_MEMBERS == 2
    assert members_for_budget(1, 10) == 1


@pytest.mark.parametrize("members", [0, 2.5])
def test_bad_member_counts_are_refused(discs, tiny, members):
    from napari_seamless_unet import UNetInputError

    with pytest.raises(UNetInputError, match="members"):
        train(*discs, config=tiny(members=members))
