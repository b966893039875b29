"""Layout models (LayoutLMv2 without detectron2, LayoutLMv3) and their configs.

`LayoutModelExtractor` lives in `socratext.model.extractor` and is imported from there, not re-exported
here, so importing the model classes never drags in the inference stack.
"""

from socratext.model.backbone import BackboneSpec, FrozenBatchNorm2d, build_resnet_fpn_backbone
from socratext.model.layoutlmv2 import (
    FreeVisualBackbone,
    LayoutLMv2FreeForTokenClassification,
    LayoutLMv2FreeModel,
    layout_sizes,
    layoutlmv2_for_token_classification,
    narrow_resnet_fpn_args,
    small_layoutlmv2_config,
    tiny_layoutlmv2_config,
    token_classification_class,
)
from socratext.model.layoutlmv3 import (
    layoutlmv3_for_token_classification,
    small_layoutlmv3_config,
    tiny_layoutlmv3_config,
)

__all__ = [
    "BackboneSpec",
    "FreeVisualBackbone",
    "FrozenBatchNorm2d",
    "LayoutLMv2FreeForTokenClassification",
    "LayoutLMv2FreeModel",
    "build_resnet_fpn_backbone",
    "layout_sizes",
    "layoutlmv2_for_token_classification",
    "layoutlmv3_for_token_classification",
    "narrow_resnet_fpn_args",
    "small_layoutlmv2_config",
    "small_layoutlmv3_config",
    "tiny_layoutlmv2_config",
    "tiny_layoutlmv3_config",
    "token_classification_class",
]
