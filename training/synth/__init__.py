"""Synthetic French receipts (images + word labels + field ground truth) for training and tests."""

from training.synth.generator import SynthReceipt, SynthWord, generate_receipt, iter_receipts, receipt_seed

__all__ = ["SynthReceipt", "SynthWord", "generate_receipt", "iter_receipts", "receipt_seed"]
