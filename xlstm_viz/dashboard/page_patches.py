"""BokehJS fixes the dashboard's pages install when they load: per-click page work that Bokeh 3.9 repeats for nothing.

Found with `benchmarks/dashboard_breakdown.py` and chromium's trace, a debugger step on the demo (software
chromium, 2 cores): ~34 style recalculations per step (63 ms of the main thread's ~200 ms), almost all of them forced
inside figure paints by `getComputedStyle`. The cause: every renderer's `paint()` calls `update_position()`, which
writes its `:host { position ... }` rule into a `<style>` element of its shadow root (`InlineStyleSheet.replace`, i.e.
`el.textContent = css`) on every paint, changed or not. Each write marks the document's active stylesheets dirty, and
the next `getComputedStyle` (BokehJS reads `--bk-*` CSS values for every line/fill/text visual it draws, ~1,500
times per step) recalculates them: ~2 ms a time. Writing a `<style>` element only when its text changes leaves one to
six recalculations per click (`tests/ui/test_dashboard_click_cost_browser.py` counts unchanged writes).

The fix runs in every page as a document-level `document_ready` callback (`install(doc)`): the first render is drawn
before it applies, every click after it benefits. It names what it applied in `window.__xlstm_viz_page_patches`;
against a BokehJS without the patched method it applies nothing and says so there (and the browser test fails).
"""

from __future__ import annotations

from bokeh.models import CustomJS

# Patch names, as the page lists them in window.__xlstm_viz_page_patches once applied.
STYLE_TEXT = "inline-stylesheet-unchanged-text"

PAGE_JS = """
if (!window.__xlstm_viz_page_patches) {
  const applied = [];
  const dom = Bokeh.require("core/dom");
  const proto = dom && dom.InlineStyleSheet && dom.InlineStyleSheet.prototype;
  if (proto && typeof proto._update === "function") {
    const update = proto._update;
    // a <style> element's text is re-parsed (and every style of its scope recalculated) whenever it is written,
    // even with the same text: write it only when it changes
    proto._update = function (css) {
      if (this.el.textContent !== css) update.call(this, css);
    };
    applied.push("%s");
  }
  window.__xlstm_viz_page_patches = applied;
}
""" % STYLE_TEXT


def install(doc) -> None:
    """Have `doc`'s page apply the fixes once it is ready (a Bokeh document of a served session)."""
    doc.js_on_event("document_ready", CustomJS(code=PAGE_JS))
