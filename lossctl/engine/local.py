"""The local engine: one pass over the inputs on this machine, chunks spread over threads.

The inputs are planned (files, sample, joined file) and read, file after
file, by one :class:`~.scan.Scan` whose :class:`~.pool.ChunkPool` spreads
the chunks over a few threads.  One pass serves ``eval`` (one model),
``compare`` (two models on the same rows, same buckets) and ``rows``
(per-row values handed to a sink).
"""

from __future__ import annotations

from ..errors import InputError
from ..io.fingerprint import fingerprint
from .chunks import Sink
from .plan import Outcome, Progress, Request
from .planning import Plan, joined_files
from .scan import Scan
from .texts import type_text


def run_local(req: Request, progress: Progress | None = None, sink: Sink | None = None) -> Outcome:
    """Evaluate a request over its files on this machine."""
    plan = Plan(req, per_row=sink is not None)
    req = plan.req  # (several models: their columns named)
    join = plan.open_join()
    scan = Scan(req, sample=plan.sample(), join=join, join_names=plan.join_names, sink=sink)
    sources = plan.sources
    total = sum(s.size or 0 for s in sources)
    done = 0
    files = []  # fingerprints of the files read, with their rows
    try:
        for unit in plan.whole_files():
            rows = scan.read(unit, (lambda b, d=done: progress(d + b, total)) if progress else None)
            done += unit.source.size or 0
            files.append({**fingerprint(unit.source), "role": "main", "rows": rows})
    except BaseException:
        scan.abort()
        raise
    states = scan.states()
    if states is not None:
        type_text(states, sources, scan.kept_kinds.kinds if scan.kept_kinds else None)
    stats = None
    if join is not None and req.join is not None:  # a row count mismatch comes first
        stats = join.finish() if req.join.key else \
            join.finish(scan.rows, ", ".join(s.name for s in sources))
    if states is None or scan.columns is None:
        raise InputError(f"{', '.join(s.name for s in sources)}: no data rows to evaluate "
                         f"(the input is empty)")
    return Outcome(states, plan.inputs, scan.columns, plan.chosen, stats,
                   {"name": "local", "threads": req.threads, "tasks": len(sources), "workers": 1},
                   files + joined_files(plan, stats))
