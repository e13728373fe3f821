"""The backends that run the emitted text: the subject the verdict judges, and the references."""
from archval.harness.backends.iree import IREE
from archval.harness.backends.xla import XLA

SUBJECT = IREE  # the verdict is the oracle against it
REFERENCES = (XLA,)  # the same text again, to say whose a disagreement is (core/triangulate.py)
