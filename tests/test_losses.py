"""Losses against hand computation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sed.config import ConfigError
from sed.losses import build_loss


def bce(logit: float, y: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_frame_clip_loss_by_hand() -> None:
    out = {
        "clip_logits": torch.tensor([[2.0, -1.0]]),
        "frame_logits": torch.tensor([[[0.5, 0.0], [-3.0, 1.0]]]),
    }
    batch = {
        "clip_target": torch.tensor([[1.0, 0.0]]),
        "frame_target": torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]),
    }
    clip = (bce(2.0, 1) + bce(-1.0, 0)) / 2
    frame = (bce(0.5, 1) + bce(0.0, 0) + bce(-3.0, 0) + bce(1.0, 1)) / 4
    loss = build_loss("frame_clip", {"clip_ratio": 0.3})
    total, terms = loss(out, batch)
    assert total.item() == pytest.approx(0.3 * clip + 0.7 * frame, rel=1e-6)
    assert terms["clip"].item() == pytest.approx(clip, rel=1e-6)
    assert terms["frame"].item() == pytest.approx(frame, rel=1e-6)
    total_clip, _ = build_loss("bce_clip")(out, batch)
    assert total_clip.item() == pytest.approx(clip, rel=1e-6)


def test_loss_config_errors() -> None:
    with pytest.raises(ConfigError, match="clip_ratio"):
        build_loss("frame_clip", {"clip_rato": 0.3})
    with pytest.raises(ConfigError, match="frame_clip"):
        build_loss("frame_clp")
    with pytest.raises(ValueError, match="clip_ratio"):
        build_loss("frame_clip", {"clip_ratio": 1.5})


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def focal(logit: float, y: float, alpha: float | None, gamma: float) -> float:
    p = sigmoid(logit)
    p_t = p if y == 1 else 1 - p
    a = 1.0 if alpha is None else (alpha if y == 1 else 1 - alpha)
    return a * (1 - p_t) ** gamma * bce(logit, y)


CLIP = [[2.0, -1.0, 0.5], [0.0, 1.5, -2.0]]
CLIP_Y = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
MASK = [[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]  # secondary labels: (0, 1) and (1, 2) ignored


def clip_batch(mask: bool = False) -> tuple[dict, dict]:
    out = {
        "clip_logits": torch.tensor(CLIP),
        "frame_logits": torch.tensor(CLIP).unsqueeze(1).repeat(1, 2, 1),  # (2, 2, 3)
    }
    batch = {
        "clip_target": torch.tensor(CLIP_Y),
        "frame_target": torch.tensor(CLIP_Y).unsqueeze(1).repeat(1, 2, 1),
    }
    if mask:
        batch["clip_mask"] = torch.tensor(MASK)
    return out, batch


def hand_mean(fn, mask: list[list[float]] | None = None) -> float:
    vals = [
        fn(CLIP[b][c], CLIP_Y[b][c], c)
        for b in range(2)
        for c in range(3)
        if mask is None or mask[b][c]
    ]
    return sum(vals) / len(vals)


def test_masked_bce_counts_only_unmasked_elements() -> None:
    out, batch = clip_batch(mask=True)
    want = hand_mean(lambda x, y, c: bce(x, y), MASK)
    total, terms = build_loss("bce_clip")(out, batch)
    assert total.item() == pytest.approx(want, rel=1e-6)
    # the clip mask stands in for the frame mask (every frame of an ignored class is ignored)
    total, terms = build_loss("frame_clip", {"clip_ratio": 0.5})(out, batch)
    assert terms["frame"].item() == pytest.approx(want, rel=1e-6)
    # an explicit frame mask wins: ignore the second frame of every class of sample 0
    fmask = torch.ones(2, 2, 3)
    fmask[0, 1] = 0
    batch["frame_mask"] = fmask
    _, terms = build_loss("frame_clip")(out, batch)
    frame = [bce(CLIP[0][c], CLIP_Y[0][c]) for c in range(3)]
    frame += [bce(CLIP[1][c], CLIP_Y[1][c]) for c in range(3)] * 2
    assert terms["frame"].item() == pytest.approx(sum(frame) / 9, rel=1e-6)
    # a mask that ignores everything gives 0, not NaN
    batch["clip_mask"] = torch.zeros(2, 3)
    total, _ = build_loss("bce_clip")(out, batch)
    assert total.item() == 0.0


def test_frame_mask_at_the_wrong_rate_is_an_error() -> None:
    out, batch = clip_batch()
    batch["frame_mask"] = torch.ones(2, 8, 3)
    with pytest.raises(ValueError, match="model's frame rate"):
        build_loss("frame_clip")(out, batch)


def test_pos_weight_scalar_and_per_class() -> None:
    def weighted(w: list[float]):
        def f(x: float, y: float, c: int) -> float:
            return -w[c] * math.log(sigmoid(x)) if y == 1 else bce(x, y)

        return f

    out, batch = clip_batch()
    total, _ = build_loss("bce_clip", {"pos_weight": 3})(out, batch)
    assert total.item() == pytest.approx(hand_mean(weighted([3, 3, 3])), rel=1e-6)
    loss = build_loss("frame_clip", {"clip_ratio": 1.0, "pos_weight": [3.0, 0.5, 2.0]})
    total, _ = loss(out, batch)
    assert total.item() == pytest.approx(hand_mean(weighted([3, 0.5, 2])), rel=1e-6)
    out, batch = clip_batch(mask=True)
    total, _ = loss(out, batch)
    assert total.item() == pytest.approx(hand_mean(weighted([3, 0.5, 2]), MASK), rel=1e-6)
    with pytest.raises(ValueError, match="3 classes"):
        build_loss("bce_clip", {"pos_weight": [1.0, 2.0]})(out, batch)
    with pytest.raises(ConfigError, match="pos_weight"):
        build_loss("bce_clip", {"pos_weight": -1})


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (None, 1.5), (0.5, 0.0)])
def test_focal_by_hand(alpha: float | None, gamma: float) -> None:
    out, batch = clip_batch()
    loss = build_loss("focal", {"alpha": alpha, "gamma": gamma})
    total, terms = loss(out, batch)
    want = hand_mean(lambda x, y, c: focal(x, y, alpha, gamma))
    assert total.item() == pytest.approx(want, rel=1e-6)
    assert set(terms) == {"clip"}
    # masks, and the frame term (the frames repeat the clip logits, so both terms are equal)
    out, batch = clip_batch(mask=True)
    total, terms = build_loss("focal", {"alpha": alpha, "gamma": gamma, "frame_ratio": 0.3})(
        out, batch
    )
    want = hand_mean(lambda x, y, c: focal(x, y, alpha, gamma), MASK)
    assert terms["clip"].item() == pytest.approx(want, rel=1e-6)
    assert terms["frame"].item() == pytest.approx(want, rel=1e-6)
    assert total.item() == pytest.approx(want, rel=1e-6)


def test_focal_gamma0_without_alpha_is_bce() -> None:
    out, batch = clip_batch()
    a, _ = build_loss("focal", {"alpha": None, "gamma": 0})(out, batch)
    b, _ = build_loss("bce_clip")(out, batch)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def activity_case() -> tuple[dict, dict]:
    # frame_target (1, 3, 2): frames active, silent, active
    frame_target = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]])
    out = {
        "frame_logits": torch.zeros(1, 3, 2),
        "activity_logits": torch.tensor([[[1.0], [-0.5], [2.0]]]),
    }
    return out, {"frame_target": frame_target}


def test_activity_by_hand() -> None:
    out, batch = activity_case()
    total, terms = build_loss("activity")(out, batch)
    want = (bce(1.0, 1) + bce(-0.5, 0) + bce(2.0, 1)) / 3
    assert total.item() == pytest.approx(want, rel=1e-6)
    assert terms["activity"].item() == pytest.approx(want, rel=1e-6)
    # class 1 ignored: frame 1 (silent among counted classes, class 1 unknown) is ignored,
    # frame 2 (only class 1 active) too, frame 0 (counted class 0 active) stays positive
    batch["clip_mask"] = torch.tensor([[1.0, 0.0]])
    total, _ = build_loss("activity")(out, batch)
    assert total.item() == pytest.approx(bce(1.0, 1), rel=1e-6)


def test_activity_without_head_names_the_model_option() -> None:
    out, batch = activity_case()
    del out["activity_logits"]
    with pytest.raises(ConfigError, match=r"model\.params\.activity_head: true"):
        build_loss("activity")(out, batch)


def center_case() -> tuple[nn.Module, dict, dict, float]:
    loss = build_loss("center", {}, embedding_dim=2, n_classes=3)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 2.0]]))
    out = {"embedding": torch.tensor([[1.0, 0.0], [0.0, 3.0]])}
    # sample 0: classes 0 and 1; sample 1: class 2
    batch = {"clip_target": torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])}
    # squared distances: (1,0)-(0,0) = 1; (1,0)-(1,1) = 1; (0,3)-(-1,2) = 2
    return loss, out, batch, (1 + 1 + 2) / 3


def test_center_by_hand() -> None:
    loss, out, batch, want = center_case()
    total, terms = loss(out, batch)
    assert total.item() == pytest.approx(want, rel=1e-6)
    assert terms["center"].item() == pytest.approx(want, rel=1e-6)
    # the mask removes the (0, 1) pair
    batch["clip_mask"] = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    total, _ = loss(out, batch)
    assert total.item() == pytest.approx((1 + 2) / 2, rel=1e-6)
    # no positive pair: 0, and backward still works
    batch = {"clip_target": torch.zeros(2, 3)}
    out = {"embedding": torch.ones(2, 2, requires_grad=True)}
    total, _ = loss(out, batch)
    total.backward()
    assert total.item() == 0.0


def test_center_needs_the_embedding_size() -> None:
    with pytest.raises(ConfigError, match="embedding_dim"):
        build_loss("center", {}, n_classes=3)
    with pytest.raises(ConfigError, match="set by the framework"):
        build_loss("center", {"embedding_dim": 4}, embedding_dim=4, n_classes=3)
    loss, _, batch, _ = center_case()
    with pytest.raises(ValueError, match="embedding"):
        loss({"embedding": torch.zeros(2, 5)}, batch)


def test_centers_are_learned_and_stay_the_optimizer_s_parameters() -> None:
    loss, out, batch, _ = center_case()
    centers = loss.centers
    opt = torch.optim.SGD(loss.parameters(), lr=0.1)
    # the trainer moves the loss after the optimizer is built: same Parameter objects after
    for moved in (loss.to("cpu"), loss.to(torch.float64), loss.to(torch.float32)):
        assert moved.centers is centers
        assert opt.param_groups[0]["params"][0] is centers
    before = centers.detach().clone()
    total, _ = loss(out, batch)
    total.backward()
    opt.step()
    assert not torch.equal(before, loss.centers.detach())
    # class 0's center moves towards sample 0's embedding (1, 0)
    assert loss.centers[0, 0].item() > 0


def combined_case() -> tuple[dict, dict]:
    out, batch = clip_batch()
    out["embedding"] = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    out["activity_logits"] = torch.tensor([[[0.5], [0.5]], [[-1.0], [2.0]]])
    return out, batch


def test_combined_total_and_terms() -> None:
    out, batch = combined_case()
    aux = [
        {"name": "activity", "weight": 0.5},
        {"name": "center", "weight": 0.1, "params": {"lr": 0.5}},
        {"name": "focal", "params": {"gamma": 1.0, "frame_ratio": 0.5}},
    ]
    loss = build_loss("frame_clip", {"clip_ratio": 0.3}, {}, aux, embedding_dim=2, n_classes=3)
    main, main_terms = build_loss("frame_clip", {"clip_ratio": 0.3})(out, batch)
    act, _ = build_loss("activity")(out, batch)
    center = loss.aux[1]
    cen, _ = center(out, batch)
    foc, foc_terms = build_loss("focal", {"gamma": 1.0, "frame_ratio": 0.5})(out, batch)
    total, terms = loss(out, batch)
    assert total.item() == pytest.approx(
        main.item() + 0.5 * act.item() + 0.1 * cen.item() + foc.item(), rel=1e-6
    )
    assert set(terms) == {
        "clip",
        "frame",
        "activity",
        "center",
        "focal",
        "focal_clip",
        "focal_frame",
    }
    assert terms["clip"].item() == pytest.approx(main_terms["clip"].item())
    assert terms["activity"].item() == pytest.approx(act.item())
    assert terms["focal_frame"].item() == pytest.approx(foc_terms["frame"].item())
    # the centers are a parameter of the combination, so the optimizer and .to() see them
    assert [n for n, _ in loss.named_parameters()] == ["aux.1.centers"]
    # no aux: the main loss itself
    assert type(build_loss("frame_clip", {}, {}, [])).__name__ == "FrameClipLoss"


def test_combined_term_names_stay_unique() -> None:
    out, batch = combined_case()
    loss = build_loss("bce_clip", {}, {}, [{"name": "activity"}, {"name": "activity"}])
    total, terms = loss(out, batch)
    assert set(terms) == {"clip", "activity", "activity_1"}
    a, _ = build_loss("activity")(out, batch)
    assert total.item() == pytest.approx(terms["clip"].item() + 2 * a.item(), rel=1e-6)


def test_aux_config_errors_name_key_and_file() -> None:
    src = {"loss.aux": "conf/x.yaml"}
    with pytest.raises(ConfigError, match=r"conf/x.yaml.*'loss.aux\[0\].wieght'.*weight"):
        build_loss("frame_clip", {}, src, [{"name": "activity", "wieght": 1}])
    with pytest.raises(ConfigError, match=r"conf/x.yaml.*loss.aux\[1\].name.*'focal'"):
        build_loss("frame_clip", {}, src, [{"name": "activity"}, {"name": "focl"}])
    with pytest.raises(ConfigError, match=r"loss.aux\[0\].name' is missing"):
        build_loss("frame_clip", {}, src, [{"weight": 1}])
    with pytest.raises(ConfigError, match=r"loss.aux\[0\].weight"):
        build_loss("frame_clip", {}, src, [{"name": "activity", "weight": -1}])
    with pytest.raises(ConfigError, match=r"conf/x.yaml.*loss.aux\[0\].params.gama.*gamma"):
        build_loss("frame_clip", {}, src, [{"name": "focal", "params": {"gama": 1}}])
    with pytest.raises(ConfigError, match=r"conf/x.yaml.*center.*embedding_dim"):
        build_loss("frame_clip", {}, src, [{"name": "center"}], n_classes=3)


def test_aux_from_a_config_file(tmp_path) -> None:
    from sed.config import load_config

    conf = tmp_path / "v.yaml"
    conf.write_text(
        "# aux losses\nloss:\n  name: frame_clip\n  aux:\n"
        "    - {name: center, weight: 1e-2, params: {lr: 1e-1}}\n"
        "    - {name: activity, weight: 0.5, params: {bogus: 1}}\n"
    )
    cfg, sources = load_config(conf)
    with pytest.raises(ConfigError, match=rf"{conf}.*loss.aux\[1\].params.bogus"):
        build_loss(cfg.loss.name, cfg.loss.params, sources, cfg.loss.aux, 4, 3)
    cfg, sources = load_config(conf, "loss.aux=[{name: center, weight: 1e-2, params: {lr: 1e-1}}]")
    loss = build_loss(cfg.loss.name, cfg.loss.params, sources, cfg.loss.aux, 4, 3)
    assert loss.weights == [0.01] and loss.aux[0].lr == 0.1
