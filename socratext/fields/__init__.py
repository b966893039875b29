"""Field assembly: normalisers, cross-checks and `assemble_receipt` (labelled words → `Receipt`)."""

from socratext.fields.assemble import assemble_receipt

__all__ = ["assemble_receipt"]
