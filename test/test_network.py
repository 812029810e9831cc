"""The paper's network: size, attention maps, the pose update (hand-computed cases), targets, losses."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from attn6d_ros.network import (
    DEPTH_OUTPUT_DIVISOR,
    AttentionHead,
    DirectLossScales,
    ModelConfig,
    PoseHeadOutputs,
    RefinerNet,
    StageNet,
    _cell_offsets,
    apply_update,
    direct_update_loss,
    flow_loss,
    point_matching_loss,
    quat_xyzw_to_matrix_torch,
    update_targets,
)

K = torch.tensor(
    [[[572.4, 0.0, 325.3], [0.0, 573.6, 242.0], [0.0, 0.0, 1.0]]], dtype=torch.float64
)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_full_config_has_the_papers_size() -> None:
    # paper_facts.md §2.3: about 7.99 M in the backbone and 9.08 M per stage.
    stage = StageNet(ModelConfig.full())
    assert _count(stage.backbone) == pytest.approx(7.99e6, rel=0.005)
    assert _count(stage) == pytest.approx(9.08e6, rel=0.005)
    assert stage.backbone.out_channels == 576
    assert len(RefinerNet(ModelConfig.full()).stages) == 4  # separate weights per stage
    assert len(RefinerNet(ModelConfig.lite(shared_stages=True)).stages) == 1


def test_average_pooling_ablation_has_the_same_parameters() -> None:
    assert _count(StageNet(ModelConfig.lite(pooling="average"))) == _count(
        StageNet(ModelConfig.lite())
    )


@pytest.mark.parametrize("pooling", ["attention", "average"])
def test_attention_maps_are_probability_maps(pooling: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig.lite(crop_size=64, pooling=pooling)
    net = StageNet(cfg).eval()
    x = torch.rand(2, 3, 64, 64) - 0.5
    with torch.no_grad():
        out = net(x, torch.rand(2, 3, 64, 64) - 0.5)
    assert out.attention.shape == (2, 3, 16, 16)
    assert torch.all(out.attention >= 0)
    torch.testing.assert_close(out.attention.sum((2, 3)), torch.ones(2, 3))
    if pooling == "average":
        torch.testing.assert_close(out.attention, torch.full_like(out.attention, 1 / 256))


def test_untrained_stage_is_the_identity_update() -> None:
    # Ours: the last regressor layer starts at zero, so every stage starts as the identity.
    net = StageNet(ModelConfig.lite(crop_size=64)).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    torch.testing.assert_close(out.xy_px, torch.zeros(1, 2))
    torch.testing.assert_close(out.dz, torch.zeros(1))
    torch.testing.assert_close(out.quat_xyzw, torch.tensor([[0.0, 0.0, 0.0, 1.0]]))


def _pose() -> tuple[torch.Tensor, torch.Tensor]:
    R = torch.from_numpy(Rotation.from_rotvec([0.3, -0.2, 0.5]).as_matrix())[None]
    t = torch.tensor([[0.05, -0.03, 0.8]], dtype=torch.float64)
    return R, t


def _update(xy=(0.0, 0.0), dz=0.0, q=(0.0, 0.0, 0.0, 1.0), zoom=2.0):
    R, t = _pose()
    f64 = torch.float64
    R_new, t_new = apply_update(
        R, t, K, torch.tensor([zoom], dtype=f64), torch.tensor([xy], dtype=f64),
        torch.tensor([dz], dtype=f64), torch.tensor([q], dtype=f64),
    )  # fmt: skip
    return R, t, R_new, t_new


def test_zero_update_is_exactly_the_identity() -> None:
    R, t, R_new, t_new = _update()
    torch.testing.assert_close(R_new, R, atol=1e-15, rtol=0)
    torch.testing.assert_close(t_new, t, atol=1e-15, rtol=0)


def test_pure_shift_moves_the_projection_by_offset_over_zoom() -> None:
    R, _, R_new, t_new = _update(xy=(8.0, -4.0), zoom=2.0)
    fx, fy, cx, cy = 572.4, 573.6, 325.3, 242.0
    u = fx * 0.05 / 0.8 + cx + 8.0 / 2.0  # 4 image pixels right
    v = fy * -0.03 / 0.8 + cy - 4.0 / 2.0  # 2 image pixels up
    expected = torch.tensor([[(u - cx) / fx * 0.8, (v - cy) / fy * 0.8, 0.8]], dtype=torch.float64)
    torch.testing.assert_close(t_new, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(R_new, R)


def test_pure_depth_change_scales_the_whole_translation() -> None:
    dz = 300.0  # paper units: exp(300 / 3000) = e^0.1
    R, t, R_new, t_new = _update(dz=dz)
    torch.testing.assert_close(t_new, t * np.exp(dz / DEPTH_OUTPUT_DIVISOR), atol=1e-12, rtol=0)
    # Along the viewing ray: the projection does not move.
    torch.testing.assert_close(t_new[:, :2] / t_new[:, 2:], t[:, :2] / t[:, 2:])
    torch.testing.assert_close(R_new, R)


def test_pure_rotation_is_left_multiplied_in_the_camera_frame() -> None:
    q = Rotation.from_rotvec([0.0, 0.0, np.pi / 2]).as_quat()  # x, y, z, w
    R, t, R_new, t_new = _update(q=tuple(q * 3.0))  # scale does not matter: normalised
    expected = torch.from_numpy(Rotation.from_quat(q).as_matrix())[None] @ R
    torch.testing.assert_close(R_new, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(t_new, t)  # rotation about the object origin


def test_quaternion_order_matches_scipy_xyzw() -> None:
    q = np.array([0.1, -0.4, 0.3, 0.85])
    ours = quat_xyzw_to_matrix_torch(torch.from_numpy(q[None]))[0].numpy()
    np.testing.assert_allclose(ours, Rotation.from_quat(q).as_matrix(), atol=1e-12)


def test_update_targets_land_exactly_on_the_truth() -> None:
    R, t = _pose()
    R_gt = torch.from_numpy(Rotation.from_rotvec([0.1, 0.2, -0.1]).as_matrix())[None] @ R
    t_gt = t + torch.tensor([[0.01, -0.02, 0.05]], dtype=torch.float64)
    zoom = torch.tensor([1.7], dtype=torch.float64)
    xy, dz, rotvec = update_targets(R, t, R_gt, t_gt, K, zoom)
    q = torch.from_numpy(Rotation.from_rotvec(rotvec[0].numpy()).as_quat())[None]
    R_new, t_new = apply_update(R, t, K, zoom, xy, dz, q)
    torch.testing.assert_close(R_new, R_gt, atol=1e-12, rtol=0)
    torch.testing.assert_close(t_new, t_gt, atol=1e-12, rtol=0)


def test_point_loss_zero_at_truth_and_symmetric_variant_is_smaller() -> None:
    points = torch.randn(200, 3, dtype=torch.float64) * 0.05
    R, t = _pose()
    R_off = (
        quat_xyzw_to_matrix_torch(torch.tensor([[0.0, 0.0, 0.2, 1.0]], dtype=torch.float64)) @ R
    )
    assert point_matching_loss(R, t, R, t, points).item() == 0.0
    plain = point_matching_loss(R_off, t, R, t, points)
    symmetric = point_matching_loss(R_off, t, R, t, points, torch.tensor([True]))
    assert 0 < symmetric.item() < plain.item()


def test_one_backward_pass_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    net = RefinerNet(ModelConfig.lite(crop_size=64, num_stages=2))
    # The output layers start at zero (identity update), which blocks gradients to everything before
    # them until the first optimiser step; give them small weights, as after that step.
    for name, param in net.named_parameters():
        if name.endswith("regressor.1.weight"):
            torch.nn.init.normal_(param, std=1e-3)
    loss = 0
    for k in range(2):
        out = net(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64), stage=k)
        loss = loss + out.xy_px.sum() + out.dz.sum() + out.quat_xyzw.sum() + out.attention.var()
    loss.backward()
    missing = [
        n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing, f"no gradient for {missing[:5]}"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"crop_size": 66}, "multiple of 4"),
        ({"pooling": "max"}, "pooling"),
        ({"num_stages": 0}, ">= 1"),
    ],
)
def test_bad_model_config_is_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig.lite(**overrides)


def test_model_config_dict_roundtrip_and_unknown_keys() -> None:
    cfg = ModelConfig.lite(crop_size=96, shared_stages=True)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "dropout": 0.1})


def test_flow_loss_compares_cell_means_of_object_pixels_only() -> None:
    # A 8x8 crop read on a 2x2 grid: the top-left cell is all object (flow (1, 2) px), the bottom-right cell
    # half object (flow (4, 0) px), the other two cells show no object (NaN) and do not count.
    target = torch.full((1, 8, 8, 2), float("nan"))
    target[0, :4, :4] = torch.tensor([1.0, 2.0])
    target[0, 4:, 4:6] = torch.tensor([4.0, 0.0])
    exact = torch.zeros(1, 2, 2, 2)
    exact[0, :, 0, 0] = torch.tensor([1.0, 2.0])
    exact[0, :, 1, 1] = torch.tensor([4.0, 0.0])
    assert flow_loss(exact, target, 3.0).item() == 0.0
    off_object_only = exact.clone()
    off_object_only[0, :, 0, 1] = 50.0
    assert flow_loss(off_object_only, target, 3.0).item() == 0.0
    wrong = exact.clone()
    # 6 px off in one of the two counted cells: smooth L1 of 6 / 3 is 1.5, mean 0.75.
    wrong[0, 0, 1, 1] = 10.0
    assert flow_loss(wrong, target, 3.0).item() == pytest.approx(0.75)
    assert torch.isfinite(flow_loss(wrong, torch.full((1, 8, 8, 2), float("nan")), 3.0)).all()


def test_flow_head_starts_at_zero_and_runs_only_in_training() -> None:
    net = RefinerNet(ModelConfig.lite(crop_size=64, flow_head=True))
    image, render = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    flow = net(image, render).flow_px
    assert flow.shape == (2, 2, 16, 16) and not flow.any()
    flow_loss(flow, torch.ones(2, 64, 64, 2), 3.0).sum().backward()
    assert net.stages[0].flow_head.weight.grad.abs().sum() > 0
    assert net.eval()(image, render).flow_px is None
    assert RefinerNet(ModelConfig.lite(crop_size=64)).train()(image, render).flow_px is None


def test_depth_moments_start_as_the_papers_head_and_read_a_change_of_scale() -> None:
    torch.manual_seed(0)
    plain = StageNet(ModelConfig.lite(crop_size=64)).eval()
    torch.nn.init.normal_(plain.heads[1].regressor[1].weight, std=0.1)  # a non-zero depth output
    net = StageNet(ModelConfig.lite(crop_size=64, depth_moments=True)).eval()
    missing, unexpected = net.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["heads.1.moment_regressor.weight", "heads.1.moment_regressor.bias"]
    assert not unexpected and net.heads[0].moment_regressor is None  # the depth head only
    image, render = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(image, render).dz, plain(image, render).dz)
    # The moments of an outward (radial) motion field: its plain mean is zero, its moment is not.
    head = AttentionHead(2, 2, 1, "average", moments=True)
    head.features = torch.nn.Identity()  # the values are the motion itself: (dx, dy) per cell
    with torch.no_grad():
        head.moment_regressor.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 1.0]]))  # dx*x + dy*y
    offsets = _cell_offsets(8, torch.float32, torch.device("cpu")).view(2, 8, 8)
    for scale in (0.5, -1.0):
        motion = scale * offsets[None]  # the object grows (or shrinks) about the crop centre
        out, _ = head(motion, motion)
        # What plain pooling sees: nothing.
        torch.testing.assert_close(motion.mean((2, 3)), torch.zeros(1, 2))
        expected = scale * (offsets**2).sum(0).mean()
        torch.testing.assert_close(out, expected.view(1, 1))


def test_direct_loss_beta_sets_the_quadratic_zone_of_every_term() -> None:
    # Errors of a tenth of each scale (0.3 px, 10 depth units, a 0.02 rad rotation): with beta 1
    # (quadratic) each term is 0.5 x 0.1² = 0.005; with beta 0.1 the errors sit at the L1 edge,
    # 0.5 x 0.1 = 0.05, ten times larger; a large error x costs |x| - beta / 2 under both.
    scales = DirectLossScales.for_crop(96)
    out = PoseHeadOutputs(
        xy_px=torch.tensor([[0.1 * scales.xy_px, 0.0]]),
        dz=torch.tensor([0.1 * scales.dz]),
        quat_xyzw=torch.tensor([[0.0, 0.0, 0.0, 1.0]]),
        attention=torch.zeros(1, 3, 1, 1),
    )
    zero_xy, zero_dz = torch.zeros(1, 2), torch.zeros(1)
    # Target rotation about z whose quaternion vector part is a tenth of the normalising half scale.
    angle = 2 * math.asin(0.1 * scales.rotation / 2)
    rotvec = torch.tensor([[0.0, 0.0, angle]])
    quadratic = direct_update_loss(out, zero_xy, zero_dz, rotvec, scales)
    l1_like = direct_update_loss(out, zero_xy, zero_dz, rotvec, DirectLossScales.for_crop(96, 0.1))
    torch.testing.assert_close(quadratic, torch.full((1, 3), 0.005), rtol=1e-4, atol=0)
    torch.testing.assert_close(l1_like, torch.full((1, 3), 0.05), rtol=1e-4, atol=0)
    far = PoseHeadOutputs(out.xy_px * 50, out.dz * 50, out.quat_xyzw, out.attention)
    far_q = direct_update_loss(far, zero_xy, zero_dz, torch.zeros(1, 3), scales)[0, :2]
    far_l1 = direct_update_loss(
        far, zero_xy, zero_dz, torch.zeros(1, 3), DirectLossScales(beta=0.1)
    )
    torch.testing.assert_close(far_q, torch.tensor([4.5, 4.5]))
    torch.testing.assert_close(far_l1[0, :2], torch.tensor([4.95, 4.95]))


def test_per_crop_image_norm_ignores_a_colour_cast_of_the_image() -> None:
    torch.manual_seed(0)
    image = torch.rand(2, 3, 64, 64) - 0.5
    render = torch.rand(2, 3, 64, 64) - 0.5
    cast = image * torch.tensor([0.6, 1.0, 1.5]).view(1, 3, 1, 1) + torch.tensor(
        [0.1, -0.05, 0.0]
    ).view(1, 3, 1, 1)
    for norm, invariant in (("per_crop", True), ("fixed", False)):
        net = RefinerNet(ModelConfig.lite(crop_size=64, image_norm=norm)).eval()
        with torch.no_grad():
            for head in net.stages[0].heads:  # non-zero outputs (the output layers start at zero)
                torch.nn.init.normal_(head.regressor[-1].weight, std=0.1)
            a, b = net(image, render), net(cast, render)
        same = torch.allclose(a.xy_px, b.xy_px, atol=1e-4) and torch.allclose(
            a.quat_xyzw, b.quat_xyzw, atol=1e-4
        )
        assert same == invariant, norm
    with pytest.raises(ValueError, match="image_norm"):
        ModelConfig.lite(image_norm="grey")
    # Checkpoints from before the option load as the fixed scaling they were trained with.
    assert ModelConfig.from_dict({k: v for k, v in ModelConfig.lite().to_dict().items()
                                  if k != "image_norm"}).image_norm == "fixed"  # fmt: skip
