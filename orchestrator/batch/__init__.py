"""Batch evaluation of generated code: one disposable sandbox per sample.

``formats`` reads inputs into ``Sample``s, ``runner`` runs them in parallel and
judges them (``verdicts``), ``summary`` aggregates (``passk``), and ``remote``
sends the same work to a control plane instead of a local engine.
"""

from __future__ import annotations

from orchestrator.batch.formats import Format, Sample, load_samples
from orchestrator.batch.runner import BatchOptions, BatchOutcome, LocalExecutor, run_batch
from orchestrator.batch.verdicts import Verdict

__all__ = [
    "BatchOptions",
    "BatchOutcome",
    "Format",
    "LocalExecutor",
    "Sample",
    "Verdict",
    "load_samples",
    "run_batch",
]
