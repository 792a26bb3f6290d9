"""Server CPU of a new dashboard session's page: the app built on the demo model, then its template's document.

    python benchmarks/session_build.py [--rounds 5]

Each round builds two apps and documents, taking turns: one through the template's plain `server_doc` (Bokeh
re-indexes the document after each of its roots) and one through the served app's (`xlstm_viz.dashboard.app`:
the roots added to a frozen document, indexed once). The figures are medians over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xlstm_viz as xv  # noqa: E402
import panel as pn  # noqa: E402
from bokeh.document import Document  # noqa: E402

from xlstm_viz.dashboard.app import DashboardApp  # noqa: E402


def build(one_walk: bool) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    app = DashboardApp(model=xv.load_demo(), threaded=False)
    template = app.template()
    t1 = time.perf_counter()
    doc = Document()
    if one_walk:
        template.server_doc(doc)
    else:
        type(template).server_doc(template, doc)  # the class's method: no frozen document
    t2 = time.perf_counter()
    app.session.close()
    return t1 - t0, t2 - t1, len(list(doc.models))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    pn.extension()
    build(True)  # imports, first traces
    times = {True: ([], []), False: ([], [])}
    for _ in range(a.rounds):
        for one_walk in (False, True):
            app_s, doc_s, models = build(one_walk)
            times[one_walk][0].append(app_s)
            times[one_walk][1].append(doc_s)
    for one_walk, label in ((False, "plain server_doc"), (True, "served (one walk)")):
        app_s, doc_s = (statistics.median(x) for x in times[one_walk])
        print(f"{label:18s}: app {app_s:.2f} s, document {doc_s:.2f} s, total {app_s + doc_s:.2f} s ({models} models)")
    ratio = statistics.median(times[False][1]) / statistics.median(times[True][1])
    print(f"document build, plain / served: {ratio:.2f}x")


if __name__ == "__main__":
    main()
