"""The backends that run the emitted text: IREE (the subject the verdict judges, core/case.py) and XLA CPU
(the reference of the three-way comparison, core/reference.py)."""
