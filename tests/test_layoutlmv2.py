"""LayoutLMv2 without detectron2 (and the tiny LayoutLMv3): training step, save/load, checkpoint layout."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from transformers import LayoutLMv2ForTokenClassification, LayoutLMv3ForTokenClassification
from transformers.models.layoutlmv2 import modeling_layoutlmv2 as hf

from socratext.model import layoutlmv2 as free
from socratext.model.backbone import BackboneSpec, FrozenBatchNorm2d
from socratext.model.layoutlmv2 import (
    LayoutLMv2FreeForTokenClassification,
    layout_sizes,
    layoutlmv2_for_token_classification,
    small_layoutlmv2_config,
    tiny_layoutlmv2_config,
)
from socratext.model.layoutlmv3 import small_layoutlmv3_config, tiny_layoutlmv3_config

VOCAB, LABELS, T = 60, 5, 12


def _names_module():
    path = Path(__file__).parent / "fixtures" / "detectron2_backbone_names.py"
    spec = importlib.util.spec_from_file_location("detectron2_backbone_names", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _batch(batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x0y0 = torch.randint(0, 600, (batch, T, 2), generator=g)
    return {
        "input_ids": torch.randint(5, VOCAB, (batch, T), generator=g),
        "bbox": torch.cat([x0y0, x0y0 + torch.randint(1, 300, (batch, T, 2), generator=g)], dim=-1),
        "image": torch.rand(batch, 3, 224, 224, generator=g) * 255,
        "attention_mask": torch.ones(batch, T, dtype=torch.long),
        "labels": torch.randint(0, LABELS, (batch, T), generator=g),
    }


@pytest.fixture(scope="module")
def tiny_model() -> LayoutLMv2FreeForTokenClassification:
    torch.manual_seed(0)
    return LayoutLMv2FreeForTokenClassification(tiny_layoutlmv2_config(VOCAB, LABELS))


def test_forward_loss_backward(tiny_model):
    tiny_model.train()
    out = tiny_model(**_batch())
    assert out.logits.shape == (2, T, LABELS)
    assert torch.isfinite(out.loss)
    tiny_model.zero_grad()
    out.loss.backward()
    params = dict(tiny_model.named_parameters())
    for name in ("classifier.weight", "layoutlmv2.embeddings.word_embeddings.weight",
                 "layoutlmv2.visual_proj.weight",
                 "layoutlmv2.visual.backbone.fpn_output2.weight",
                 "layoutlmv2.visual.backbone.bottom_up.res5.0.conv2.weight"):
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name
    # FREEZE_AT=2: the stem and res2 get no gradient, as in detectron2.
    assert params["layoutlmv2.visual.backbone.bottom_up.stem.conv1.weight"].grad is None


def test_padding_does_not_change_logits_of_real_tokens(tiny_model):
    tiny_model.eval()
    batch = _batch(batch=1)
    padded = {k: v for k, v in batch.items() if k != "labels"}
    pad = torch.zeros(1, 4, dtype=torch.long)
    padded["input_ids"] = torch.cat([batch["input_ids"], pad], dim=1)
    padded["bbox"] = torch.cat([batch["bbox"], torch.zeros(1, 4, 4, dtype=torch.long)], dim=1)
    padded["attention_mask"] = torch.cat([batch["attention_mask"], pad], dim=1)
    with torch.no_grad():
        short = tiny_model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        long = tiny_model(**padded).logits[:, :T]
    # Relative position buckets depend on absolute positions only, so real-token logits are unchanged.
    torch.testing.assert_close(short, long, atol=1e-5, rtol=1e-4)


def test_save_and_reload_give_identical_logits(tiny_model, tmp_path):
    tiny_model.eval()
    tiny_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "layoutlmv2"
    reloaded, info = LayoutLMv2FreeForTokenClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    reloaded.eval()
    batch = {k: v for k, v in _batch().items() if k != "labels"}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, tiny_model(**batch).logits, rtol=0, atol=0)
    # Non-persistent buffers are rebuilt, not left uninitialised.
    visual = reloaded.layoutlmv2.visual
    assert visual.pixel_mean.flatten().tolist() == pytest.approx([103.53, 116.28, 123.675])
    assert reloaded.layoutlmv2.embeddings.position_ids[0, :4].tolist() == [0, 1, 2, 3]
    # The factory loads it too (the free class here: detectron2 is not installed in this environment).
    via_factory = layoutlmv2_for_token_classification(str(tmp_path))
    assert isinstance(via_factory, LayoutLMv2FreeForTokenClassification)


@pytest.mark.slow
def test_trainable_batch_norm_statistics_survive_save_and_reload(tmp_path):
    """The small config's trainable BatchNorm: running statistics are checkpointed and restored."""
    backbone = free.narrow_resnet_fpn_args(width_per_group=4, stem=8, res2_out=16, fpn=16, norm="BN",
                                           freeze_at=0)
    torch.manual_seed(0)
    model = LayoutLMv2FreeForTokenClassification(tiny_layoutlmv2_config(VOCAB, LABELS,
                                                                        detectron2_config_args=backbone))
    model.train()
    model(**_batch())  # one training forward moves the running statistics away from their init
    norm = model.layoutlmv2.visual.backbone.bottom_up.res2[0].conv1.norm
    assert isinstance(norm, nn.BatchNorm2d) and int(norm.num_batches_tracked) == 1
    model.eval()
    model.save_pretrained(tmp_path)
    reloaded, info = LayoutLMv2FreeForTokenClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    reloaded.eval()
    reloaded_norm = reloaded.layoutlmv2.visual.backbone.bottom_up.res2[0].conv1.norm
    torch.testing.assert_close(reloaded_norm.running_mean, norm.running_mean)
    batch = {k: v for k, v in _batch(seed=3).items() if k != "labels"}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits, rtol=0, atol=0)


class _StubVisual(nn.Module):
    """Stands in for detectron2's `LayoutLMv2VisualBackbone` so transformers' class can be instantiated."""

    def __init__(self, config):
        super().__init__()
        self.cfg = SimpleNamespace(MODEL=SimpleNamespace(PIXEL_MEAN=[0.0] * 3, PIXEL_STD=[1.0] * 3))
        self.pixel_mean = nn.Buffer(torch.zeros(3, 1, 1), persistent=False)
        self.pixel_std = nn.Buffer(torch.ones(3, 1, 1), persistent=False)


def _transformers_layout(config, monkeypatch) -> dict[str, tuple[int, ...]]:
    """Keys/shapes of transformers' `LayoutLMv2ForTokenClassification` for `config`.

    Its own classes with only the detectron2 pieces stubbed: the text/layout part comes from transformers'
    code; the backbone part (`layoutlmv2.visual.backbone.*`) from the independent detectron2 name generator.
    """
    monkeypatch.setattr(hf, "requires_backends", lambda *args, **kwargs: None)
    monkeypatch.setattr(hf, "LayoutLMv2VisualBackbone", _StubVisual)
    fake_detectron2 = SimpleNamespace(layers=SimpleNamespace(FrozenBatchNorm2d=FrozenBatchNorm2d))
    monkeypatch.setattr(hf, "detectron2", fake_detectron2, raising=False)
    with torch.device("meta"):
        model = LayoutLMv2ForTokenClassification(config)
    layout = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    backbone = _names_module().detectron2_fpn_entries(config.detectron2_config_args)
    layout.update({f"layoutlmv2.visual.backbone.{name}": shape for name, shape in backbone})
    return layout


def test_state_dict_layout_is_transformers_layout(tiny_model, monkeypatch):
    ours = {k: tuple(v.shape) for k, v in tiny_model.state_dict().items()}
    theirs = _transformers_layout(tiny_layoutlmv2_config(VOCAB, LABELS), monkeypatch)
    assert sorted(set(ours) ^ set(theirs)) == []
    assert ours == theirs


def test_transformers_named_checkpoint_loads_without_missing_or_unexpected_keys(tmp_path, monkeypatch):
    config = tiny_layoutlmv2_config(VOCAB, LABELS)
    layout = _transformers_layout(config, monkeypatch)
    monkeypatch.undo()
    g = torch.Generator().manual_seed(1)
    state = {k: torch.randn(shape, generator=g) for k, shape in layout.items()}
    # Original LayoutLMv2 checkpoints also carry the pixel normalisation buffers: tolerated, recomputed.
    state["layoutlmv2.visual.pixel_mean"] = torch.zeros(3, 1, 1)
    config.save_pretrained(tmp_path)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    model, info = LayoutLMv2FreeForTokenClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    loaded = model.state_dict()
    for key in ("layoutlmv2.visual.backbone.bottom_up.res3.0.conv2.weight",
                "layoutlmv2.visual.backbone.bottom_up.stem.conv1.norm.running_var",
                "layoutlmv2.encoder.layer.1.attention.self.qkv_linear.weight", "classifier.bias"):
        torch.testing.assert_close(loaded[key], state[key])
    assert model.layoutlmv2.visual.pixel_mean.flatten().tolist() == pytest.approx([103.53, 116.28, 123.675])


def test_factory_picks_transformers_class_when_detectron2_is_installed(monkeypatch):
    assert free.token_classification_class() is LayoutLMv2FreeForTokenClassification
    config = tiny_layoutlmv2_config(VOCAB, LABELS)
    assert type(layoutlmv2_for_token_classification(config)) is LayoutLMv2FreeForTokenClassification
    with pytest.raises(TypeError):
        layoutlmv2_for_token_classification(config, revision="main")
    monkeypatch.setattr(free, "is_detectron2_available", lambda: True)
    assert free.token_classification_class() is LayoutLMv2ForTokenClassification


def test_layout_sizes_satisfy_the_embedding_constraint():
    for hidden in (32, 64, 256, 768):
        c, s = layout_sizes(hidden)
        assert 4 * c + 2 * s == hidden and c >= s > 0
    assert layout_sizes(768) == (128, 128)
    with pytest.raises(ValueError):
        layout_sizes(33)


def test_small_configs_fit_the_cpu_budget():
    """≤ 50 MB of float32 weights for a 4k-piece receipt vocabulary (counted on the meta device)."""
    for config, cls in ((small_layoutlmv2_config(4000, 41), LayoutLMv2FreeForTokenClassification),
                        (small_layoutlmv3_config(4000, 41), LayoutLMv3ForTokenClassification)):
        with torch.device("meta"):
            model = cls(config)
        size = sum(v.numel() * v.element_size() for v in model.state_dict().values())
        assert size < 50e6, (cls.__name__, size)
    spec = BackboneSpec.from_detectron2_args(small_layoutlmv2_config(4000, 41).detectron2_config_args)
    assert (spec.depth, spec.fpn_out_channels, spec.freeze_at) == (50, 64, 0)


def test_tiny_layoutlmv3_forward_and_loss():
    torch.manual_seed(0)
    config = tiny_layoutlmv3_config(VOCAB, LABELS)
    model = LayoutLMv3ForTokenClassification(config)
    batch = _batch()
    out = model(input_ids=batch["input_ids"], bbox=batch["bbox"], attention_mask=batch["attention_mask"],
                pixel_values=torch.randn(2, 3, 224, 224), labels=batch["labels"])
    assert out.logits.shape == (2, T, LABELS)
    out.loss.backward()
    assert model.classifier.weight.grad is not None
    text_only = LayoutLMv3ForTokenClassification(tiny_layoutlmv3_config(VOCAB, LABELS, visual=False))
    assert text_only(input_ids=batch["input_ids"], bbox=batch["bbox"]).logits.shape == (2, T, LABELS)


def test_extractor_pages_without_images_share_one_blank_sheet() -> None:
    """The stream's extract stage labels pages without their image: the extractor then expands one blank
    sheet over the batch (no per-page pixels). It must score exactly as if each page came with a white
    image, and a batch mixing a real image with missing ones must score the real one as on its own."""
    from PIL import Image
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from socratext.document import OcrPage, Word
    from socratext.labels import BIO_LABELS
    from socratext.model.extractor import LayoutModelExtractor

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, **{w: i + 4 for i, w in enumerate(
        ["total", "12,50", "carrefour", "paris", "date"])}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                  cls_token="[CLS]", sep_token="[SEP]")
    torch.manual_seed(0)
    cfg = tiny_layoutlmv2_config(len(vocab), len(BIO_LABELS), id2label=dict(enumerate(BIO_LABELS)),
                                 label2id={t: i for i, t in enumerate(BIO_LABELS)})
    ext = LayoutModelExtractor(layoutlmv2_for_token_classification(cfg), tok, device="cpu", batch_size=4)
    assert ext.uses_images  # the extraction stage decodes page images for it (streams.agents.extract)
    pages = [OcrPage([Word(w, (30 + 90 * i, 40 + 20 * k, 100 + 90 * i, 55 + 20 * k), line_id=k)
                      for i, w in enumerate(["carrefour", "total", "12,50", "paris"][: 2 + k])], 600, 300)
             for k in range(3)]
    white = Image.new("RGB", (600, 300), "white")
    blank = ext.word_probabilities(pages)
    assert ext._blank is not None and ext._blank.shape == (3, 224, 224)  # made once, kept
    explicit = ext.word_probabilities(pages, [white] * 3)
    for a, b in zip(blank, explicit, strict=True):
        assert a.shape == b.shape and a == pytest.approx(b, abs=1e-7)
    dark = Image.new("RGB", (600, 300), (40, 10, 90))
    alone = ext.word_probabilities(pages[1:2], [dark])[0]
    mixed = ext.word_probabilities(pages, [None, dark, None])
    assert mixed[1] == pytest.approx(alone, abs=1e-7)
    assert mixed[0] == pytest.approx(blank[0], abs=1e-7)
    assert abs(alone - blank[1]).max() > 1e-5  # the image does reach the model (a small random one)
