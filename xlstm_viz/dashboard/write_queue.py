"""Every change Panel queued for a served page reaches it: Panel 1.9's write queue could leave the last one unsent.

Panel (1.9.4, `panel/io/document.py`) writes a served document's changes in one of two ways. `unlocked()` (which
`pn.io.hold` also enters on the document's thread: the app's result delivery, `source_updates.held`) writes them
at once when the websocket's write lock is free and nothing is queued (line ~559). Otherwise
`schedule_write_events` builds the message now, appends it to the document's queue `_WRITE_MSGS` and sets the flag
`_WRITE_BLOCK` (line ~384), which sends every later change into the same queue. Each call starts a write task
`_dispatch_msgs` (line ~232): it returns at once unless the flag is set, takes the whole queue, writes it, waits
for the write futures (line ~260), then clears the flag because *its* batch is done (line ~263).

Changes queued while a write task waits for its futures get a task of their own, which runs a loop turn after it
was created. When the waiting task resumes first (its futures resolved in the turn in which the change was
queued) it clears the flag, and the new task then finds it clear and returns without writing: the message stays
in the queue until some other change starts a write. After "Run prompt" the first message is the click's
"running..." (queued because Bokeh was writing another message, such as its reply to the page's last one) and
the lost one is the result: status line, figures and tables. Nothing changes after it, and the page showed
"running..." for good while the server had the result (about 1 run in 40 of
tests/ui/test_dashboard_prompt_browser.py on a loaded 2-core machine; tests/ui/test_dashboard_status_order_browser.py
forces that order).

On Panel's path the order was never at risk: the queue is first in, first out, and nothing is written directly
while it holds a message. What was missing is that a message in the queue always has a write task coming. The
wrapper restores that after every write task: a queue left non-empty with the flag clear gets the flag and a task
again. Setting busy through the result's own path instead would not help: that path goes through `unlocked()`
too, and every change of a served page (the status line, the edit buttons' disabled states, the figures) is
mended alike.
"""

from __future__ import annotations

import panel.io.document as _document

_MARK = "_xlstm_viz_requeues"


def _requeue(doc) -> None:
    """A queue with messages and no write coming (the flag is clear): set the flag and start a write task."""
    if doc not in _document._WRITE_BLOCK and _document._WRITE_MSGS.get(doc):
        _document._WRITE_BLOCK[doc] = True
        _document._dispatch_write_task(doc, _document._dispatch_msgs, doc)


def install() -> bool:
    """Wrap Panel's write task (once per process); False where this Panel has no such queue to mend."""
    current = getattr(_document, "_dispatch_msgs", None)
    if current is None or not all(hasattr(_document, n) for n in ("_WRITE_MSGS", "_WRITE_BLOCK",
                                                                   "_dispatch_write_task")):
        return False
    if getattr(current, _MARK, False):
        return True

    async def _dispatch_msgs(doc):
        await current(doc)
        # the task that cleared the flag may have left later messages behind (their own task saw it clear)
        _requeue(doc)

    setattr(_dispatch_msgs, _MARK, True)
    # Panel's own callers (schedule_write_events, the task's retry) look the name up here at each call
    _document._dispatch_msgs = _dispatch_msgs
    return True


INSTALLED = install()
