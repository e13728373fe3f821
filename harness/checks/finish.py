"""What follows run_case, the one place that does it, for the gate and pytest alike: a family's records made
final. Each record gets what its run knows beside the case (the published config, the checkpoint, the
mutant, a replay of its own), its structural brief where the goldens were checked, the built-in emitter's
flags, a failing case's localisation (not a mutant's: its failure is the point); then the pages, where the
run writes them; a localisation that raised, a repro bundle or a page not written is the case's ERROR
(core/case.py: failed); last, every free text clipped. Nothing writes to a record after this returns
(tests/test_architecture.py)."""
from __future__ import annotations

from collections.abc import Callable

from . import builtin, localise
from .structural import StructuralResult
from ..core.binding import IDENTITY, Binding
from ..core.bundle import Bundles
from ..core.case import failed
from ..core.emitter_protocol import BUILTIN_EMITTER, DEFAULT_EMITTER
from ..core.fixtures import Fixture
from ..core.messages import clip_record
from ..core.record import CheckpointFacts, MutantFacts, PublishedFacts, Record

Pages = Callable[[list[Record]], tuple[set[str], list[str]]]  # writes the records' pages: (those written, problems)


def finish(records: list[Record], fixture: Fixture, emitter=DEFAULT_EMITTER, binding: Binding = IDENTITY, *,
           goldens: dict[str, StructuralResult] | None = None, replay: str | None = None,
           published: PublishedFacts | None = None, checkpoint: CheckpointFacts | None = None,
           mutant: MutantFacts | None = None, bundles: Bundles | None = None,
           pages: Pages | None = None) -> tuple[set[str], list[str]]:
    """records (a family's, run by run_case on fixture with emitter and binding) made final, in place; (the pages
    written, the problems met writing the reports: each an ERROR of every record). goldens: the structural check of
    each graph kind, where one ran; replay: the records' own where the run's is not run_case's; bundles: run_case's."""
    for record in records:
        record.published, record.checkpoint, record.mutant = published, checkpoint, mutant
        record.replay = replay or record.replay
        golden = (goldens or {}).get(record.graph)
        if golden is not None:
            record.structural = golden.brief()
            if golden.emit_s is not None:  # the structural pass emitted the text the case took
                record.timings.setdefault("emit", golden.emit_s)
        if record.emitter == BUILTIN_EMITTER:  # its parsed flags; another emitter's reading is its own
            record.emitter_flags = builtin.flags(fixture.config_path)
        if mutant is None:
            record.localisation = localise.of_record(record, fixture, emitter, binding)
            if record.localisation and record.localisation.error:  # a diagnosis that did not run to its end
                failed(record, "localisation", record.localisation.error)
    written, page_problems = pages(records) if pages is not None else (set(), [])
    problems = [*(bundles.problems if bundles else []), *page_problems]
    for record in records:
        if problems:  # a run whose diagnosis or report is missing is not a PASS
            failed(record, "report", "; ".join(problems))
        clip_record(record)
    return written, problems
