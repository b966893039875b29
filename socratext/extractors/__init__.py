"""Extractors: label every OCR word of a page (`base.Extractor`); `rules.RulesExtractor` needs no model."""

from socratext.extractors.base import Extractor
from socratext.extractors.rules import RulesExtractor

__all__ = ["Extractor", "RulesExtractor"]
