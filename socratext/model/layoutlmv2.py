"""LayoutLMv2 token classification without detectron2.

transformers' `LayoutLMv2Model` needs detectron2 only for its visual backbone (`LayoutLMv2VisualBackbone`,
built through detectron2's model registry) and, by accident, in `_init_weights` (which names
`detectron2.layers.FrozenBatchNorm2d` and so raises NameError without it). Everything else — embeddings,
encoder, pooler, the forward pass, the token-classification head — is plain PyTorch.

So `LayoutLMv2FreeModel` *is* a `LayoutLMv2Model` (subclass, inherited `forward`) whose `__init__` skips the
`requires_backends("detectron2")` check and builds `FreeVisualBackbone` (our ResNet-FPN, same contract and
same parameter names) in place of detectron2's, and whose `_init_weights` needs no detectron2. The state
dict keys are those of transformers' classes (`layoutlmv2.visual.backbone.bottom_up...`, `classifier...`),
so checkpoints move both ways, and `save_pretrained`/`from_pretrained` are transformers' own.

Use `layoutlmv2_for_token_classification(config_or_path)`: it returns transformers' class when detectron2
is installed (the reference implementation) and the detectron2-free one otherwise.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn
from transformers import LayoutLMv2Config, LayoutLMv2ForTokenClassification, LayoutLMv2Model
from transformers.models.layoutlmv2 import modeling_layoutlmv2 as hf
from transformers.utils import is_detectron2_available

from socratext.model.backbone import FPN, BackboneSpec, Conv2d, FrozenBatchNorm2d, build_resnet_fpn_backbone

try:  # transformers >= 5: init functions that skip tensors already loaded from a checkpoint
    from transformers import initialization as _init
except ImportError:  # transformers 4.x: weights are initialised before loading, plain torch init is right
    _init = nn.init


def _copy(tensor: torch.Tensor, value: torch.Tensor) -> None:
    copy = getattr(_init, "copy_", None)
    if copy is not None:
        copy(tensor, value)
    else:
        with torch.no_grad():
            tensor.copy_(value)


class FreeVisualBackbone(nn.Module):
    """Drop-in for transformers' `LayoutLMv2VisualBackbone`: image batch -> (B, H'·W', C) visual tokens.

    Input: `(B, 3, 224, 224)` float pixels in 0–255, **BGR** (what `LayoutLMv2ImageProcessor` produces), a
    tensor or anything with a `.tensor` attribute (detectron2's `ImageList`). Normalised with the
    non-persistent `pixel_mean`/`pixel_std` buffers (not in checkpoints, as in transformers), run through the
    FPN, feature "p2" (stride 4) average-pooled to `config.image_feature_pool_shape[:2]` (7×7) and flattened.
    """

    out_feature_key = "p2"

    def __init__(self, config: LayoutLMv2Config) -> None:
        super().__init__()
        self.spec = BackboneSpec.from_detectron2_args(config.detectron2_config_args)
        self.backbone: FPN = build_resnet_fpn_backbone(self.spec)
        channels = len(self.spec.pixel_mean)
        self.register_buffer("pixel_mean", torch.tensor(self.spec.pixel_mean).view(channels, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(self.spec.pixel_std).view(channels, 1, 1),
                             persistent=False)
        pool_hw = tuple(config.image_feature_pool_shape[:2])
        if torch.are_deterministic_algorithms_enabled():
            # As transformers does: AdaptiveAvgPool2d has no deterministic CUDA backward.
            stride = self.backbone.out_strides[self.out_feature_key]
            self.pool = nn.AvgPool2d(tuple(math.ceil(math.ceil(224 / stride) / n) for n in pool_hw))
        else:
            self.pool = nn.AdaptiveAvgPool2d(pool_hw)
        if len(config.image_feature_pool_shape) == 2:
            config.image_feature_pool_shape = [*config.image_feature_pool_shape, self.backbone.out_channels]
        if config.image_feature_pool_shape[2] != self.backbone.out_channels:
            raise ValueError(f"image_feature_pool_shape[2]={config.image_feature_pool_shape[2]} but the FPN "
                             f"gives {self.backbone.out_channels} channels (MODEL.FPN.OUT_CHANNELS)")

    def forward(self, images) -> torch.Tensor:
        images = images if torch.is_tensor(images) else images.tensor
        x = (images.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std
        features = self.backbone(x, features=(self.out_feature_key,))[self.out_feature_key]
        return self.pool(features).flatten(start_dim=2).transpose(1, 2).contiguous()


class _FreeInitMixin:
    """`_init_weights` for the detectron2-free classes (transformers' raises NameError without detectron2).

    Same initialisation as transformers for the text/layout part (normal(0, initializer_range) for linear and
    embedding weights, LayerNorm to identity, zero q/v biases, `position_ids`), detectron2's for the backbone
    (He init for ResNet convs, He-uniform a=1 for FPN convs, identity frozen batch norms).
    """

    config: LayoutLMv2Config

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, Conv2d):
            if module.init_mode == "msra":
                _init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            else:
                _init.kaiming_uniform_(module.weight, a=1)
            if module.bias is not None:
                _init.zeros_(module.bias)
        elif isinstance(module, FrozenBatchNorm2d):
            _init.ones_(module.weight)
            _init.zeros_(module.bias)
            _init.zeros_(module.running_mean)
            _init.constant_(module.running_var, 1.0 - module.eps)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            if module.weight is not None:
                _init.ones_(module.weight)
                _init.zeros_(module.bias)
            if isinstance(module, nn.BatchNorm2d):
                _init.zeros_(module.running_mean)
                _init.ones_(module.running_var)
                _init.zeros_(module.num_batches_tracked)
        elif isinstance(module, nn.Linear):
            _init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                _init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            _init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                _init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, hf.LayoutLMv2SelfAttention):
            if self.config.fast_qkv:
                _init.zeros_(module.q_bias)
                _init.zeros_(module.v_bias)
        elif isinstance(module, hf.LayoutLMv2Embeddings):
            _copy(module.position_ids, torch.arange(module.position_ids.shape[-1]).expand((1, -1)))
        elif isinstance(module, FreeVisualBackbone):
            _copy(module.pixel_mean, torch.tensor(module.spec.pixel_mean).view_as(module.pixel_mean))
            _copy(module.pixel_std, torch.tensor(module.spec.pixel_std).view_as(module.pixel_std))
        elif isinstance(module, LayoutLMv2Model) and hasattr(module, "visual_segment_embedding"):
            _init.normal_(module.visual_segment_embedding, mean=0.0, std=std)


_IGNORE_UNEXPECTED = [
    r"visual\.pixel_(mean|std)$",  # persistent buffers in the original LayoutLMv2 checkpoints; recomputed
    r"num_batches_tracked$",  # left by batch norms converted to frozen ones
]


class LayoutLMv2FreeModel(_FreeInitMixin, LayoutLMv2Model):
    """`LayoutLMv2Model` with `FreeVisualBackbone` as `visual`; `forward` is transformers' own."""

    config_class = LayoutLMv2Config
    _keys_to_ignore_on_load_unexpected = _IGNORE_UNEXPECTED

    def __init__(self, config: LayoutLMv2Config) -> None:
        # Skip LayoutLMv2Model.__init__ (its first line demands detectron2); build the same attributes.
        super(LayoutLMv2Model, self).__init__(config)
        self.config = config
        self.has_visual_segment_embedding = config.has_visual_segment_embedding
        self.embeddings = hf.LayoutLMv2Embeddings(config)
        self.visual = FreeVisualBackbone(config)
        self.visual_proj = nn.Linear(config.image_feature_pool_shape[-1], config.hidden_size)
        if self.has_visual_segment_embedding:
            self.visual_segment_embedding = nn.Parameter(nn.Embedding(1, config.hidden_size).weight[0])
        self.visual_LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.visual_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.encoder = hf.LayoutLMv2Encoder(config)
        self.pooler = hf.LayoutLMv2Pooler(config)
        self.post_init()


class LayoutLMv2FreeForTokenClassification(_FreeInitMixin, LayoutLMv2ForTokenClassification):
    """`LayoutLMv2ForTokenClassification` over `LayoutLMv2FreeModel`; `forward` (and loss) are transformers'.

    `forward(input_ids, bbox, image, attention_mask, token_type_ids, position_ids, inputs_embeds, labels)`
    returns a `TokenClassifierOutput` whose logits cover the text tokens only (the 49 visual tokens are
    dropped by the head), exactly as transformers' class.
    """

    config_class = LayoutLMv2Config
    _keys_to_ignore_on_load_unexpected = _IGNORE_UNEXPECTED

    def __init__(self, config: LayoutLMv2Config) -> None:
        super(LayoutLMv2ForTokenClassification, self).__init__(config)
        self.num_labels = config.num_labels
        self.layoutlmv2 = LayoutLMv2FreeModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()


def token_classification_class() -> type[LayoutLMv2ForTokenClassification]:
    """transformers' class when detectron2 is importable, else the detectron2-free one."""
    if is_detectron2_available():
        return LayoutLMv2ForTokenClassification
    return LayoutLMv2FreeForTokenClassification


def layoutlmv2_for_token_classification(config_or_path: LayoutLMv2Config | str | os.PathLike,
                                        **from_pretrained_kwargs) -> LayoutLMv2ForTokenClassification:
    """A fresh model from a config, or `from_pretrained(path_or_hub_id, **kwargs)`, with the right class.

    Both classes share config and checkpoint format, so a model saved by one loads in the other.
    """
    cls = token_classification_class()
    if isinstance(config_or_path, LayoutLMv2Config):
        if from_pretrained_kwargs:
            raise TypeError("keyword arguments are for from_pretrained; pass a path or hub id")
        return cls(config_or_path)
    return cls.from_pretrained(config_or_path, **from_pretrained_kwargs)


def layout_sizes(hidden_size: int) -> tuple[int, int]:
    """(coordinate_size, shape_size) with `4c + 2s == hidden_size`, c >= s, as balanced as possible.

    LayoutLMv2 and v3 concatenate x0, y0, x1, y1 (`coordinate_size` each) and height, width (`shape_size`
    each) into the layout embedding added to the token embedding, so any other split fails in forward.
    Raises ValueError when `hidden_size` is odd (no split exists).
    """
    if hidden_size % 2:
        raise ValueError(f"hidden_size must be even, got {hidden_size}")
    half = hidden_size // 2  # 2c + s == half
    c = -(-half // 3)  # smallest c with c >= s = half - 2c
    return c, half - 2 * c


def narrow_resnet_fpn_args(*, width_per_group: int, stem: int, res2_out: int, fpn: int, norm: str,
                           freeze_at: int) -> dict[str, object]:
    """detectron2 args for a narrow ResNet-50-layout FPN (bottleneck widths `width_per_group`·2^k).

    Still valid for detectron2 itself (depth 50, one group), so `layoutlmv2_for_token_classification` can
    build transformers' class from the same config when detectron2 is installed.
    """
    args = dict(LayoutLMv2Config.get_default_detectron2_config())
    args.update({
        "MODEL.RESNETS.DEPTH": 50, "MODEL.RESNETS.NUM_GROUPS": 1,
        "MODEL.RESNETS.WIDTH_PER_GROUP": width_per_group,
        "MODEL.RESNETS.STEM_OUT_CHANNELS": stem, "MODEL.RESNETS.RES2_OUT_CHANNELS": res2_out,
        "MODEL.RESNETS.NORM": norm, "MODEL.FPN.OUT_CHANNELS": fpn, "MODEL.BACKBONE.FREEZE_AT": freeze_at,
    })
    return args


def _v2_config(vocab_size: int, num_labels: int, *, hidden: int, layers: int, heads: int, intermediate: int,
               backbone: dict[str, object], max_tokens: int, pad_token_id: int,
               **overrides) -> LayoutLMv2Config:
    hidden = overrides.pop("hidden_size", hidden)  # the layout split must follow a caller's width
    coordinate, shape = layout_sizes(hidden)
    backbone = overrides.pop("detectron2_config_args", backbone)  # a caller's backbone sets the pool width
    kwargs = dict(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=intermediate, coordinate_size=coordinate, shape_size=shape,
        max_position_embeddings=max_tokens, pad_token_id=pad_token_id, num_labels=num_labels,
        image_feature_pool_shape=[7, 7, int(backbone["MODEL.FPN.OUT_CHANNELS"])],
        detectron2_config_args=backbone,
    )
    kwargs.update(overrides)
    return LayoutLMv2Config(**kwargs)


def tiny_layoutlmv2_config(vocab_size: int, num_labels: int, *, max_tokens: int = 512, pad_token_id: int = 0,
                           **overrides) -> LayoutLMv2Config:
    """A tiny LayoutLMv2 for tests: hidden 32, 2 layers; ResNet-50 layout 4-wide, FPN 16, frozen BN."""
    backbone = narrow_resnet_fpn_args(width_per_group=4, stem=8, res2_out=16, fpn=16, norm="FrozenBN",
                                      freeze_at=2)
    return _v2_config(vocab_size, num_labels, hidden=32, layers=2, heads=2, intermediate=64,
                      backbone=backbone, max_tokens=max_tokens, pad_token_id=pad_token_id, **overrides)


def small_layoutlmv2_config(vocab_size: int, num_labels: int, *, max_tokens: int = 512, pad_token_id: int = 0,
                            **overrides) -> LayoutLMv2Config:
    """The CPU default: hidden 256, 4 layers, 4 heads, FFN 512; ResNet-50 layout 16-wide (bottlenecks
    16..128, outputs 64..512), FPN 64 channels, trainable BatchNorm (trained from scratch: frozen identity
    norms would leave the convs unnormalised) and nothing frozen.

    ~5.2 M parameters (21 MB float32 with a 4k vocabulary), ~4.6 GFLOP per 512-token receipt; the FFN is 2×
    not 4× wide to stay under 150 ms on 2 cores (`bench/bench_layout_models.py`).
    """
    backbone = narrow_resnet_fpn_args(width_per_group=16, stem=32, res2_out=64, fpn=64, norm="BN",
                                      freeze_at=0)
    return _v2_config(vocab_size, num_labels, hidden=256, layers=4, heads=4, intermediate=512,
                      backbone=backbone, max_tokens=max_tokens, pad_token_id=pad_token_id, **overrides)
