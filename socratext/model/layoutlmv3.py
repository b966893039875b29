"""Configs for layout models trained from scratch: "tiny" (tests) and "small" (the CPU default model).

LayoutLMv3 needs no detectron2 (its image branch is a ViT-style patch embedding), so its token classifier is
transformers' `LayoutLMv3ForTokenClassification` as is. LayoutLMv2 configs live in
`socratext.model.layoutlmv2` (they also describe the ResNet-FPN backbone) and are re-exported here so both
families are reachable from one place.

Constraint for both families: the 2-D layout embedding concatenates x0, y0, x1, y1 (`coordinate_size` each)
and height, width (`shape_size` each), and is added to the token embedding, so
`4 * coordinate_size + 2 * shape_size == hidden_size` or the forward pass fails with a shape mismatch.
"""

from __future__ import annotations

from transformers import LayoutLMv3Config, LayoutLMv3ForTokenClassification

from socratext.model.layoutlmv2 import layout_sizes, small_layoutlmv2_config, tiny_layoutlmv2_config

__all__ = [
    "layout_sizes",
    "layoutlmv3_for_token_classification",
    "small_layoutlmv2_config",
    "small_layoutlmv3_config",
    "tiny_layoutlmv2_config",
    "tiny_layoutlmv3_config",
]


def _v3_config(vocab_size: int, num_labels: int, *, hidden: int, layers: int, heads: int, intermediate: int,
               pad_token_id: int, max_tokens: int, visual: bool, **overrides) -> LayoutLMv3Config:
    hidden = overrides.pop("hidden_size", hidden)  # the layout split must follow a caller's width
    coordinate, shape = layout_sizes(hidden)
    kwargs = dict(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=intermediate, coordinate_size=coordinate, shape_size=shape,
        # RoBERTa-style positions start at pad_token_id + 1, so room for max_tokens + pad + 1 rows.
        max_position_embeddings=max_tokens + pad_token_id + 1, pad_token_id=pad_token_id,
        bos_token_id=None, eos_token_id=None, visual_embed=visual, input_size=224, patch_size=16,
        num_labels=num_labels,
    )
    kwargs.update(overrides)
    return LayoutLMv3Config(**kwargs)


def tiny_layoutlmv3_config(vocab_size: int, num_labels: int, *, pad_token_id: int = 0, max_tokens: int = 512,
                           visual: bool = True, **overrides) -> LayoutLMv3Config:
    """A few-kB LayoutLMv3 for tests: hidden 32, 2 layers, 2 heads (patch embedding 16×16 on 224×224)."""
    return _v3_config(vocab_size, num_labels, hidden=32, layers=2, heads=2, intermediate=64,
                      pad_token_id=pad_token_id, max_tokens=max_tokens, visual=visual, **overrides)


def small_layoutlmv3_config(vocab_size: int, num_labels: int, *, pad_token_id: int = 0, max_tokens: int = 512,
                            visual: bool = True, **overrides) -> LayoutLMv3Config:
    """A CPU-sized LayoutLMv3: hidden 256, 4 layers, 4 heads, FFN 512 (`bench/bench_layout_models.py`).

    With `visual=True` the 14×14 image patches add 197 tokens to the 512 text ones (cost ~ +40 %).
    """
    return _v3_config(vocab_size, num_labels, hidden=256, layers=4, heads=4, intermediate=512,
                      pad_token_id=pad_token_id, max_tokens=max_tokens, visual=visual, **overrides)


def layoutlmv3_for_token_classification(config_or_path: LayoutLMv3Config | str,
                                        **from_pretrained_kwargs) -> LayoutLMv3ForTokenClassification:
    """A fresh model from a config, or `from_pretrained(path_or_hub_id, **kwargs)`."""
    if isinstance(config_or_path, LayoutLMv3Config):
        if from_pretrained_kwargs:
            raise TypeError("keyword arguments are for from_pretrained; pass a path or hub id")
        return LayoutLMv3ForTokenClassification(config_or_path)
    return LayoutLMv3ForTokenClassification.from_pretrained(config_or_path, **from_pretrained_kwargs)
