"""Training data sources, all turned into `LabeledPage`s (OCR words + one word label each):
synthetic French receipts, SROIE (key values matched to lines) and Label Studio exports."""
