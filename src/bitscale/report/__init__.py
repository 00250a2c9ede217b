"""`bitscale report`: a self-contained HTML report of a results store.

    from bitscale.report import build_report
    result = build_report("runs/lm_sizes.db", "reports/lm")      # report.html, report.json, PNGs

One concept per module: collect (store -> sweeps, slices, comparison tables), fits (which law, the
fits), findings (sentences and the paper's claims as verdicts), theory (a `bitscale theory` output as
claims), figures (PNGs and data URIs), commands (the commands that reproduce it), html (rendering),
build (putting it together and writing the files). docs/report.md describes the rules.
"""

from bitscale.report.build import ReportResult, build_report
from bitscale.report.collect import ReportError, collect, compare_table
from bitscale.report.findings import FAILS, HOLDS, INCONCLUSIVE, UNTESTED, Claim

__all__ = ["Claim", "FAILS", "HOLDS", "INCONCLUSIVE", "ReportError", "ReportResult", "UNTESTED", "build_report", "collect",
           "compare_table"]
