"""The detectron2-free ResNet-FPN: names/shapes identical to detectron2's, frozen norms, output contract."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import LayoutLMv2Config

from socratext.model.backbone import BackboneSpec, FrozenBatchNorm2d, build_resnet_fpn_backbone
from socratext.model.layoutlmv2 import FreeVisualBackbone, narrow_resnet_fpn_args, tiny_layoutlmv2_config

FIXTURES = Path(__file__).parent / "fixtures"


def _load_names_module():
    spec = importlib.util.spec_from_file_location("detectron2_backbone_names",
                                                  FIXTURES / "detectron2_backbone_names.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


names = _load_names_module()


def _entries(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _compare(ours: dict, expected: dict) -> None:
    missing = sorted(set(expected) - set(ours))
    extra = sorted(set(ours) - set(expected))
    assert not missing, f"{len(missing)} detectron2 entries missing, e.g. {missing[:5]}"
    assert not extra, f"{len(extra)} entries detectron2 does not have, e.g. {extra[:5]}"
    wrong = {k: (ours[k], expected[k]) for k in expected if ours[k] != expected[k]}
    assert not wrong, f"shape mismatches (ours, detectron2): {dict(list(wrong.items())[:5])}"


def test_fixture_matches_its_generator():
    """The checked-in list is what the independent generator derives for LayoutLMv2's default config."""
    on_disk = names.parse_entries(names.FIXTURE.read_text())
    assert on_disk == dict(names.detectron2_fpn_entries(names.LAYOUTLMV2_DEFAULT))
    assert len(on_disk) == 536
    assert on_disk["bottom_up.res5.0.conv2.weight"] == (2048, 64, 3, 3)  # 32 groups × 64 wide, 3×3
    # The generator's copy of the LayoutLMv2 defaults is the one transformers ships.
    shipped = LayoutLMv2Config.get_default_detectron2_config()
    assert {k: shipped[k] for k in names.LAYOUTLMV2_DEFAULT} == names.LAYOUTLMV2_DEFAULT


def test_default_layoutlmv2_backbone_names_and_shapes_match_detectron2():
    spec = BackboneSpec.from_detectron2_args(LayoutLMv2Config().detectron2_config_args)
    with torch.device("meta"):
        backbone = build_resnet_fpn_backbone(spec)
    _compare(_entries(backbone), names.parse_entries(names.FIXTURE.read_text()))


@pytest.mark.parametrize("overrides", [
    {"MODEL.RESNETS.DEPTH": 18, "MODEL.RESNETS.RES2_OUT_CHANNELS": 64, "MODEL.RESNETS.NUM_GROUPS": 1},
    {"MODEL.RESNETS.DEPTH": 50, "MODEL.RESNETS.NUM_GROUPS": 1, "MODEL.RESNETS.WIDTH_PER_GROUP": 64,
     "MODEL.RESNETS.STRIDE_IN_1X1": True, "MODEL.RESNETS.NORM": "BN", "MODEL.FPN.OUT_CHANNELS": 128},
    {"MODEL.RESNETS.DEPTH": 34, "MODEL.RESNETS.RES2_OUT_CHANNELS": 64, "MODEL.RESNETS.NUM_GROUPS": 1,
     "MODEL.RESNETS.NORM": "GN", "MODEL.FPN.NORM": "GN"},
])
def test_other_depths_and_norms_match_detectron2(overrides):
    args = {**LayoutLMv2Config.get_default_detectron2_config(), **overrides}
    with torch.device("meta"):
        backbone = build_resnet_fpn_backbone(BackboneSpec.from_detectron2_args(args))
    _compare(_entries(backbone), dict(names.detectron2_fpn_entries(args)))


def test_frozen_batch_norm_has_buffers_only_and_is_identity_at_init():
    bn = FrozenBatchNorm2d(4)
    assert list(bn.parameters()) == []
    assert sorted(dict(bn.named_buffers())) == ["bias", "running_mean", "running_var", "weight"]
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(bn(x), x)


def test_freeze_at_and_frozen_bn_leave_no_trainable_norm():
    spec = BackboneSpec.from_detectron2_args(tiny_layoutlmv2_config(50, 3).detectron2_config_args)
    backbone = build_resnet_fpn_backbone(spec)
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert not any(".norm." in n for n, _ in backbone.named_parameters())
    # FREEZE_AT=2 (detectron2's default): stem and res2 frozen, res3+ and the FPN trained.
    assert not any(n.startswith(("bottom_up.stem.", "bottom_up.res2.")) for n in trainable)
    assert "bottom_up.res3.0.conv1.weight" in trainable and "fpn_output2.weight" in trainable


def test_freeze_converts_trainable_bn_to_frozen():
    args = {**narrow_resnet_fpn_args(width_per_group=4, stem=8, res2_out=16, fpn=16, norm="BN", freeze_at=2)}
    backbone = build_resnet_fpn_backbone(BackboneSpec.from_detectron2_args(args))
    assert isinstance(backbone.bottom_up.res2[0].conv1.norm, FrozenBatchNorm2d)
    assert isinstance(backbone.bottom_up.res3[0].conv1.norm, torch.nn.BatchNorm2d)


def test_fpn_levels_strides_and_channels():
    spec = BackboneSpec.from_detectron2_args(tiny_layoutlmv2_config(50, 3).detectron2_config_args)
    backbone = build_resnet_fpn_backbone(spec).eval()
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 224, 224))
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"]
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(56, 56), (28, 28), (14, 14), (7, 7), (4, 4)]
    assert {v.shape[1] for v in out.values()} == {16}
    with torch.no_grad():
        only_p2 = backbone(torch.randn(1, 3, 224, 224), features=("p2",))
    assert list(only_p2) == ["p2"]


def test_visual_module_contract():
    config = tiny_layoutlmv2_config(50, 3)
    visual = FreeVisualBackbone(config).eval()
    assert "pixel_mean" not in visual.state_dict() and "pixel_std" not in visual.state_dict()
    images = torch.rand(2, 3, 224, 224) * 255
    with torch.no_grad():
        out = visual(images)
    assert out.shape == (2, 49, 16)
    # Same result for a detectron2-ImageList-like wrapper.
    wrapped = type("ImageList", (), {"tensor": images})()
    with torch.no_grad():
        torch.testing.assert_close(visual(wrapped), out)


def test_default_channels_give_49_by_256_tokens():
    """The full-width FPN (256 channels) on a small ResNet-18: (B, 49, 256) for 224×224 inputs."""
    args = {**LayoutLMv2Config.get_default_detectron2_config(), "MODEL.RESNETS.DEPTH": 18,
            "MODEL.RESNETS.NUM_GROUPS": 1, "MODEL.RESNETS.RES2_OUT_CHANNELS": 64,
            "MODEL.RESNETS.STEM_OUT_CHANNELS": 16}
    config = LayoutLMv2Config(detectron2_config_args=args)
    with torch.device("meta"):  # shapes only: no compute
        visual = FreeVisualBackbone(config).eval()
        assert visual(torch.empty(2, 3, 224, 224)).shape == (2, 49, 256)


@pytest.mark.parametrize("bad", [
    {"MODEL.BACKBONE.NAME": "build_retinanet_resnet_fpn_backbone"},
    {"MODEL.RESNETS.DEPTH": 26},
    {"MODEL.RESNETS.DEPTH": 18},  # R18 with 32 groups / 256-wide res2 is refused by detectron2 too
    {"MODEL.RESNETS.DEFORM_ON_PER_STAGE": [False, True, False, False]},
])
def test_unsupported_settings_are_refused(bad):
    with pytest.raises(ValueError):
        BackboneSpec.from_detectron2_args({**LayoutLMv2Config.get_default_detectron2_config(), **bad})


def test_spec_round_trips_through_detectron2_args():
    spec = BackboneSpec.from_detectron2_args(LayoutLMv2Config.get_default_detectron2_config())
    assert BackboneSpec.from_detectron2_args(spec.to_detectron2_args()) == spec


def _reference_p2(state: dict[str, torch.Tensor], args: dict, images: torch.Tensor) -> torch.Tensor:
    """FPN "p2" computed functionally from detectron2's rules and the state dict alone (no modules).

    Independent of the module code: walks the names, applies detectron2's conv/norm/stride conventions.
    """
    F = torch.nn.functional
    stride_in_1x1 = args["MODEL.RESNETS.STRIDE_IN_1X1"]
    groups = args["MODEL.RESNETS.NUM_GROUPS"]

    def conv(prefix, x, stride=1, groups=1):
        w = state[f"{prefix}.weight"]
        y = F.conv2d(x, w, state.get(f"{prefix}.bias"), stride, w.shape[-1] // 2, 1, groups)
        if f"{prefix}.norm.running_mean" in state:  # frozen BN: (y - mean) / sqrt(var + eps) * weight + bias
            n = {k: state[f"{prefix}.norm.{k}"].view(1, -1, 1, 1)
                 for k in ("weight", "bias", "running_mean", "running_var")}
            y = (y - n["running_mean"]) / torch.sqrt(n["running_var"] + 1e-5) * n["weight"] + n["bias"]
        return y

    mean = torch.tensor(args.get("MODEL.PIXEL_MEAN", [103.530, 116.280, 123.675])).view(1, 3, 1, 1)
    std = torch.tensor(args["MODEL.PIXEL_STD"]).view(1, 3, 1, 1)
    x = conv("bottom_up.stem.conv1", (images - mean) / std, stride=2)
    x = F.max_pool2d(F.relu(x), kernel_size=3, stride=2, padding=1)
    feats = {}
    for stage in (2, 3, 4, 5):
        b = 0
        while f"bottom_up.res{stage}.{b}.conv1.weight" in state:
            p = f"bottom_up.res{stage}.{b}"
            s = 2 if b == 0 and stage > 2 else 1
            short = conv(f"{p}.shortcut", x, stride=s) if f"{p}.shortcut.weight" in state else x
            if f"{p}.conv3.weight" in state:  # bottleneck
                y = F.relu(conv(f"{p}.conv1", x, stride=s if stride_in_1x1 else 1))
                y = F.relu(conv(f"{p}.conv2", y, stride=1 if stride_in_1x1 else s, groups=groups))
                y = conv(f"{p}.conv3", y)
            else:  # basic block
                y = conv(f"{p}.conv2", F.relu(conv(f"{p}.conv1", x, stride=s)))
            x = F.relu(y + short)
            b += 1
        feats[stage] = x
    top = conv("fpn_lateral5", feats[5])
    for stage in (4, 3, 2):
        top = conv(f"fpn_lateral{stage}", feats[stage]) + F.interpolate(top, scale_factor=2.0, mode="nearest")
    return conv("fpn_output2", top)


@pytest.mark.parametrize("overrides", [
    {"MODEL.RESNETS.STRIDE_IN_1X1": False, "MODEL.RESNETS.NUM_GROUPS": 2},
    {"MODEL.RESNETS.STRIDE_IN_1X1": True, "MODEL.RESNETS.NUM_GROUPS": 1},
    {"MODEL.RESNETS.DEPTH": 18, "MODEL.RESNETS.RES2_OUT_CHANNELS": 64, "MODEL.RESNETS.NUM_GROUPS": 1,
     "MODEL.RESNETS.STEM_OUT_CHANNELS": 8, "MODEL.RESNETS.WIDTH_PER_GROUP": 64},
])
def test_p2_matches_a_functional_reference(overrides):
    args = {**narrow_resnet_fpn_args(width_per_group=4, stem=8, res2_out=16, fpn=8, norm="FrozenBN",
                                     freeze_at=2), **overrides}
    torch.manual_seed(0)
    backbone = build_resnet_fpn_backbone(BackboneSpec.from_detectron2_args(args)).eval()
    with torch.no_grad():  # non-trivial frozen statistics, so a misplaced norm would show
        for name, buf in backbone.named_buffers():
            if name.endswith(("running_mean", "bias")):
                buf.normal_(0, 0.1)
            elif name.endswith(("running_var", "weight")):
                buf.uniform_(0.5, 1.5)
    images = torch.rand(1, 3, 96, 96) * 255  # any multiple of 32 works; small keeps the test fast
    spec = BackboneSpec.from_detectron2_args(args)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (spec.pixel_mean, spec.pixel_std))
    normalised = (images - mean) / std
    with torch.no_grad():
        ours = backbone(normalised, features=("p2",))["p2"]
        reference = _reference_p2(backbone.state_dict(), args, images)
    assert ours.shape == (1, 8, 24, 24)
    # float32 summation order differs (conv algorithms): tolerance relative to the feature scale.
    torch.testing.assert_close(ours, reference, rtol=1e-3, atol=1e-4 * float(reference.abs().max()))
