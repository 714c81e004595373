"""The document pipeline's work: read pages, OCR them, extract résumé fields.

Each module is a self-contained async building block; the stage runner decides when to
call which and what to checkpoint between them.
"""
