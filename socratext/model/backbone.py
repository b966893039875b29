"""LayoutLMv2's visual backbone (ResNet/ResNeXt + FPN) in plain PyTorch, without detectron2.

LayoutLMv2 keeps only `model.backbone` of a detectron2 Mask R-CNN: a ResNe(X)t "bottom up" network and
a Feature Pyramid Network on top. detectron2 is hard to install (no wheels for current PyTorch, needs a
compiler), so this module rebuilds the same network from the same settings
(`LayoutLMv2Config.detectron2_config_args`, e.g. ``{"MODEL.RESNETS.DEPTH": 101, ...}``).

Why the names matter: a checkpoint saved by transformers' `LayoutLMv2ForTokenClassification` must load
here and the other way round, so every submodule is registered under the attribute name detectron2 uses
(`bottom_up.stem.conv1`, `bottom_up.res2.0.conv1.norm`, `bottom_up.res2.0.shortcut`, `fpn_lateral2`,
`fpn_output2`, ...) with the same shapes. `tests/test_backbone.py` checks this against a list derived
independently from detectron2's construction rules.

Semantics kept from detectron2 (read in `detectron2/modeling/backbone/{resnet,fpn}.py` and
`detectron2/layers/{wrappers,batch_norm,blocks}.py`):
- `Conv2d` is a conv whose optional normalisation is a *submodule* named `norm` (hence `conv1.norm.*`);
- `FrozenBatchNorm2d` holds `weight`, `bias`, `running_mean`, `running_var` as buffers (no parameters);
- the stem is a 7×7/2 conv + 3×3/2 max-pool; stages `res2..res5`, the first block of res3..res5 has stride 2
  (on the 1×1 conv when `STRIDE_IN_1X1`, else on the 3×3 one); a block gets a 1×1 projection `shortcut`
  only when its input and output channel counts differ; BasicBlock for depth 18/34, BottleneckBlock else;
- FPN: `fpn_lateral{s}` 1×1 and `fpn_output{s}` 3×3 convs (bias only without norm), nearest ×2 top-down
  upsampling, summed; `p6` = max-pool(kernel 1, stride 2) of `p5`, no parameters;
- `MODEL.BACKBONE.FREEZE_AT` freezes the stem (≥1) and res2.. (≥ stage index) like `ResNet.freeze`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

# detectron2's defaults (detectron2/config/defaults.py) for the keys this backbone reads.
DETECTRON2_DEFAULTS: dict[str, object] = {
    "MODEL.PIXEL_MEAN": [103.530, 116.280, 123.675],
    "MODEL.PIXEL_STD": [1.0, 1.0, 1.0],
    "MODEL.BACKBONE.NAME": "build_resnet_backbone",
    "MODEL.BACKBONE.FREEZE_AT": 2,
    "MODEL.FPN.IN_FEATURES": [],
    "MODEL.FPN.OUT_CHANNELS": 256,
    "MODEL.FPN.NORM": "",
    "MODEL.FPN.FUSE_TYPE": "sum",
    "MODEL.RESNETS.DEPTH": 50,
    "MODEL.RESNETS.OUT_FEATURES": ["res4"],
    "MODEL.RESNETS.NUM_GROUPS": 1,
    "MODEL.RESNETS.NORM": "FrozenBN",
    "MODEL.RESNETS.WIDTH_PER_GROUP": 64,
    "MODEL.RESNETS.STRIDE_IN_1X1": True,
    "MODEL.RESNETS.RES5_DILATION": 1,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 256,
    "MODEL.RESNETS.STEM_OUT_CHANNELS": 64,
    "MODEL.RESNETS.DEFORM_ON_PER_STAGE": [False, False, False, False],
}

BLOCKS_PER_STAGE = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
                    152: (3, 8, 36, 3)}
"""Blocks in res2..res5 for each supported depth (detectron2's `build_resnet_backbone`)."""

_KEYS = {
    "depth": "MODEL.RESNETS.DEPTH",
    "num_groups": "MODEL.RESNETS.NUM_GROUPS",
    "width_per_group": "MODEL.RESNETS.WIDTH_PER_GROUP",
    "stride_in_1x1": "MODEL.RESNETS.STRIDE_IN_1X1",
    "res5_dilation": "MODEL.RESNETS.RES5_DILATION",
    "stem_out_channels": "MODEL.RESNETS.STEM_OUT_CHANNELS",
    "res2_out_channels": "MODEL.RESNETS.RES2_OUT_CHANNELS",
    "norm": "MODEL.RESNETS.NORM",
    "out_features": "MODEL.RESNETS.OUT_FEATURES",
    "fpn_in_features": "MODEL.FPN.IN_FEATURES",
    "fpn_out_channels": "MODEL.FPN.OUT_CHANNELS",
    "fpn_norm": "MODEL.FPN.NORM",
    "fpn_fuse_type": "MODEL.FPN.FUSE_TYPE",
    "freeze_at": "MODEL.BACKBONE.FREEZE_AT",
    "pixel_mean": "MODEL.PIXEL_MEAN",
    "pixel_std": "MODEL.PIXEL_STD",
}
"""`BackboneSpec` field -> detectron2 config key."""


@dataclass(frozen=True)
class BackboneSpec:
    """The detectron2 settings that shape a ResNet-FPN backbone, read from `detectron2_config_args`."""

    depth: int = 50
    num_groups: int = 1
    width_per_group: int = 64
    stride_in_1x1: bool = True
    res5_dilation: int = 1
    stem_out_channels: int = 64
    res2_out_channels: int = 256
    norm: str = "FrozenBN"
    out_features: tuple[str, ...] = ("res4",)
    fpn_in_features: tuple[str, ...] = ()
    fpn_out_channels: int = 256
    fpn_norm: str = ""
    fpn_fuse_type: str = "sum"
    freeze_at: int = 2
    pixel_mean: tuple[float, ...] = (103.530, 116.280, 123.675)
    pixel_std: tuple[float, ...] = (1.0, 1.0, 1.0)

    @property
    def in_channels(self) -> int:
        """Image channels: detectron2 feeds `len(MODEL.PIXEL_MEAN)` channels to the stem."""
        return len(self.pixel_mean)

    @classmethod
    def from_detectron2_args(cls, args: Mapping[str, object] | None) -> BackboneSpec:
        """Build from a flat ``{"MODEL.RESNETS.DEPTH": 101, ...}`` dict over detectron2's defaults.

        Raises ValueError for settings this reimplementation does not cover (another backbone builder,
        deformable convolutions), rather than silently building a different network.
        """
        cfg = {**DETECTRON2_DEFAULTS, **(args or {})}
        if cfg["MODEL.BACKBONE.NAME"] != "build_resnet_fpn_backbone":
            raise ValueError(f"only build_resnet_fpn_backbone is supported: {cfg['MODEL.BACKBONE.NAME']!r}")
        if any(cfg["MODEL.RESNETS.DEFORM_ON_PER_STAGE"]):
            raise ValueError("deformable convolutions (MODEL.RESNETS.DEFORM_ON_PER_STAGE) are not supported")
        def floats(v):
            return tuple(float(x) for x in v)

        convert = {"out_features": tuple, "fpn_in_features": tuple, "pixel_mean": floats, "pixel_std": floats}
        values = {f.name: convert.get(f.name, type(f.default))(cfg[_KEYS[f.name]]) for f in fields(cls)}
        spec = cls(**values)
        spec.validate()
        return spec

    def validate(self) -> None:
        """The same preconditions detectron2 asserts, so a config valid here also builds there."""
        if self.depth not in BLOCKS_PER_STAGE:
            raise ValueError(f"MODEL.RESNETS.DEPTH must be one of {sorted(BLOCKS_PER_STAGE)}")
        if self.res5_dilation not in (1, 2):
            raise ValueError("MODEL.RESNETS.RES5_DILATION must be 1 or 2")
        basic_ok = (self.res2_out_channels, self.num_groups, self.res5_dilation) == (64, 1, 1)
        if self.depth in (18, 34) and not basic_ok:
            raise ValueError("R18/R34 need RES2_OUT_CHANNELS=64, NUM_GROUPS=1, RES5_DILATION=1 (detectron2)")
        if len(self.pixel_mean) != len(self.pixel_std):
            raise ValueError("MODEL.PIXEL_MEAN and MODEL.PIXEL_STD must have the same length")
        if not self.fpn_in_features:
            raise ValueError("MODEL.FPN.IN_FEATURES is empty")
        if not set(self.fpn_in_features) <= set(self.out_features):
            raise ValueError("MODEL.FPN.IN_FEATURES must be among MODEL.RESNETS.OUT_FEATURES")
        if self.fpn_fuse_type not in ("sum", "avg"):
            raise ValueError("MODEL.FPN.FUSE_TYPE must be 'sum' or 'avg'")

    def to_detectron2_args(self) -> dict[str, object]:
        """The inverse of `from_detectron2_args`: what to put in `LayoutLMv2Config.detectron2_config_args`."""
        out: dict[str, object] = {"MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone"}
        for f in fields(self):
            value = getattr(self, f.name)
            out[_KEYS[f.name]] = list(value) if isinstance(value, tuple) else value
        return out


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine terms, all stored as buffers (none is trained).

    Initialised to the identity (`running_var = 1 - eps` so that `1/sqrt(var + eps) == 1`), as in detectron2.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace every `nn.BatchNorm2d` in `module` by a frozen copy (`convert_frozen_batchnorm`)."""
        if isinstance(module, nn.BatchNorm2d):
            frozen = cls(module.num_features, module.eps)
            with torch.no_grad():
                if module.affine:
                    frozen.weight.copy_(module.weight)
                    frozen.bias.copy_(module.bias)
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
            return frozen
        for name, child in module.named_children():
            new = cls.convert(child)
            if new is not child:
                module.add_module(name, new)
        return module


def get_norm(norm: str, channels: int) -> nn.Module | None:
    """The normalisation layer detectron2's `get_norm` builds for `norm` ("" means none)."""
    if not norm:
        return None
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if norm == "BN":
        return nn.BatchNorm2d(channels)
    if norm == "GN":
        return nn.GroupNorm(32, channels)
    raise ValueError(f"unsupported norm {norm!r} (FrozenBN, BN, GN or '')")


class Conv2d(nn.Conv2d):
    """`nn.Conv2d` followed by an optional `norm` submodule (so its keys read `conv1.norm.running_var`).

    `init_mode` says how the weights start when trained from scratch: "msra" (He normal, fan-out) for the
    ResNet convs, "xavier" (He uniform, a=1) for the FPN ones — detectron2's `c2_msra_fill`/`c2_xavier_fill`.
    """

    def __init__(self, *args, norm: nn.Module | None = None, init_mode: str = "msra", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.init_mode = init_mode
        self.reset_conv()

    def reset_conv(self) -> None:
        with torch.no_grad():
            if self.init_mode == "msra":
                nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.kaiming_uniform_(self.weight, a=1)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return self.norm(x) if self.norm is not None else x


class BasicStem(nn.Module):
    """7×7/2 conv + norm + ReLU + 3×3/2 max-pool: overall stride 4."""

    stride = 4

    def __init__(self, in_channels: int, out_channels: int, norm: str) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv1 = Conv2d(in_channels, out_channels, kernel_size=7, stride=2, padding=3, bias=False,
                            norm=get_norm(norm, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class BasicBlock(nn.Module):
    """Two 3×3 convs plus identity or 1×1 projection shortcut (ResNet-18/34)."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1,
                 norm: str = "FrozenBN") -> None:
        super().__init__()
        self.stride = stride
        self.out_channels = out_channels
        self.shortcut = (Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False,
                                norm=get_norm(norm, out_channels)) if in_channels != out_channels else None)
        self.conv1 = Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False,
                            norm=get_norm(norm, out_channels))
        self.conv2 = Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False,
                            norm=get_norm(norm, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        return F.relu(out + shortcut)


class BottleneckBlock(nn.Module):
    """1×1 reduce, 3×3 (grouped for ResNeXt), 1×1 expand, plus identity or projection shortcut."""

    def __init__(self, in_channels: int, out_channels: int, *, bottleneck_channels: int, stride: int = 1,
                 num_groups: int = 1, norm: str = "FrozenBN", stride_in_1x1: bool = False,
                 dilation: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.out_channels = out_channels
        self.shortcut = (Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False,
                                norm=get_norm(norm, out_channels)) if in_channels != out_channels else None)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(in_channels, bottleneck_channels, kernel_size=1, stride=stride_1x1, bias=False,
                            norm=get_norm(norm, bottleneck_channels))
        self.conv2 = Conv2d(bottleneck_channels, bottleneck_channels, kernel_size=3, stride=stride_3x3,
                            padding=dilation, bias=False, groups=num_groups, dilation=dilation,
                            norm=get_norm(norm, bottleneck_channels))
        self.conv3 = Conv2d(bottleneck_channels, out_channels, kernel_size=1, bias=False,
                            norm=get_norm(norm, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        return F.relu(out + shortcut)


def _freeze(module: nn.Module) -> nn.Module:
    """detectron2's `CNNBlockBase.freeze`: no gradients, batch norms frozen."""
    for p in module.parameters():
        p.requires_grad = False
    return FrozenBatchNorm2d.convert(module)


class ResNet(nn.Module):
    """The bottom-up network: `stem`, then stages `res2`, `res3`, ... (each an nn.Sequential of blocks)."""

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        self.stem = BasicStem(spec.in_channels, spec.stem_out_channels, spec.norm)
        stage_of = {"res2": 2, "res3": 3, "res4": 4, "res5": 5}
        self.out_features = tuple(spec.out_features)
        max_stage = max(stage_of[f] for f in self.out_features)
        in_ch, out_ch = spec.stem_out_channels, spec.res2_out_channels
        bottleneck = spec.num_groups * spec.width_per_group
        stride = self.stem.stride
        self.stage_names: list[str] = []
        self.out_channels: dict[str, int] = {}
        self.out_strides: dict[str, int] = {}
        for idx, stage_idx in enumerate(range(2, max_stage + 1)):
            dilation = spec.res5_dilation if stage_idx == 5 else 1
            first_stride = 1 if idx == 0 or (stage_idx == 5 and dilation == 2) else 2
            blocks: list[nn.Module] = []
            for b in range(BLOCKS_PER_STAGE[spec.depth][idx]):
                s = first_stride if b == 0 else 1
                if spec.depth in (18, 34):
                    blocks.append(BasicBlock(in_ch, out_ch, stride=s, norm=spec.norm))
                else:
                    blocks.append(BottleneckBlock(in_ch, out_ch, bottleneck_channels=bottleneck, stride=s,
                                                  num_groups=spec.num_groups, norm=spec.norm,
                                                  stride_in_1x1=spec.stride_in_1x1, dilation=dilation))
                in_ch = out_ch
            name = f"res{stage_idx}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            stride *= first_stride
            self.out_channels[name], self.out_strides[name] = out_ch, stride
            out_ch *= 2
            bottleneck *= 2
        if spec.freeze_at >= 1:
            _freeze(self.stem)
        for stage_idx, name in enumerate(self.stage_names, start=2):
            if spec.freeze_at >= stage_idx:
                _freeze(getattr(self, name))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        outputs: dict[str, torch.Tensor] = {}
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self.out_features:
                outputs[name] = x
        return outputs


class LastLevelMaxPool(nn.Module):
    """`p6` from `p5` by a stride-2 max-pool of kernel 1 (no parameters)."""

    num_levels = 1
    in_feature = "p5"

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [F.max_pool2d(x, kernel_size=1, stride=2, padding=0)]


class FPN(nn.Module):
    """Feature pyramid over `bottom_up`'s features; outputs `p2..p5` (+ `p6`), all `out_channels` wide.

    `forward(x, features=...)` can skip the 3×3 output convs of levels nobody reads (LayoutLMv2 only reads
    `p2`); the lateral/top-down path is always computed because every level feeds the finer ones.
    """

    def __init__(self, bottom_up: ResNet, in_features: Iterable[str], out_channels: int, norm: str = "",
                 fuse_type: str = "sum") -> None:
        super().__init__()
        self.in_features = tuple(in_features)
        strides = [bottom_up.out_strides[f] for f in self.in_features]
        for a, b in zip(strides, strides[1:], strict=False):
            if b != 2 * a:
                raise ValueError(f"FPN input strides must double level to level, got {strides}")
        use_bias = norm == ""
        self.stages = [int(math.log2(s)) for s in strides]
        for feature, stage in zip(self.in_features, self.stages, strict=True):
            lateral = Conv2d(bottom_up.out_channels[feature], out_channels, kernel_size=1, bias=use_bias,
                             norm=get_norm(norm, out_channels), init_mode="xavier")
            output = Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=use_bias,
                            norm=get_norm(norm, out_channels), init_mode="xavier")
            self.add_module(f"fpn_lateral{stage}", lateral)
            self.add_module(f"fpn_output{stage}", output)
        self.top_block = LastLevelMaxPool()
        self.bottom_up = bottom_up
        self.fuse_type = fuse_type
        self.out_channels = out_channels
        self.out_strides = {f"p{s}": 2**s for s in self.stages}
        self.out_strides[f"p{self.stages[-1] + 1}"] = 2 ** (self.stages[-1] + 1)

    def forward(self, x: torch.Tensor, features: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = set(self.out_strides) if features is None else set(features)
        bottom_up = self.bottom_up(x)
        top = f"p{self.stages[-1]}"
        results: dict[str, torch.Tensor] = {}
        prev = None
        for feature, stage in zip(reversed(self.in_features), reversed(self.stages), strict=True):
            lateral = getattr(self, f"fpn_lateral{stage}")(bottom_up[feature])
            if prev is None:
                prev = lateral
            else:
                prev = lateral + F.interpolate(prev, scale_factor=2.0, mode="nearest")
                if self.fuse_type == "avg":
                    prev = prev / 2
            name = f"p{stage}"
            if name in wanted or (name == top and f"p{stage + 1}" in wanted):
                results[name] = getattr(self, f"fpn_output{stage}")(prev)
        if f"p{self.stages[-1] + 1}" in wanted:
            results[f"p{self.stages[-1] + 1}"] = self.top_block(results[top])[0]
        return {name: results[name] for name in self.out_strides if name in wanted}


def build_resnet_fpn_backbone(spec: BackboneSpec) -> FPN:
    """detectron2's `build_resnet_fpn_backbone` for `spec`."""
    bottom_up = ResNet(spec)
    return FPN(bottom_up, spec.fpn_in_features, spec.fpn_out_channels, norm=spec.fpn_norm,
               fuse_type=spec.fpn_fuse_type)
