"""WiringView served on its own: a heatmap click in chromium edits the wiring on the server."""

import numpy as np

from tests.ui.conftest import bokeh_to_screen, console_errors, wait_until
from xlstm_viz.dashboard import wiring_tables
from xlstm_viz.dashboard.wiring_view import WiringView, build_wiring


def test_clicking_a_heatmap_cell_cycles_that_synapse_in_the_served_wiring(page, serve, artifacts):
    view = WiringView(build_wiring("AutoNCP", 16, 2, 4, seed=3))
    errors = console_errors(page)
    served = serve(view)
    page.goto(served.url)
    page.wait_for_selector(".bk-Canvas", timeout=20000)
    page.wait_for_timeout(1000)
    # pick an existing internal synapse and click the centre of its heatmap cell
    src, dst = map(int, np.argwhere(view.wiring.adjacency_matrix != 0)[0])
    before = int(view.wiring.adjacency_matrix[src, dst])
    x, y = wiring_tables.cell_center(view._image, "neuron", src, dst)
    sx, sy = bokeh_to_screen(page, view.heatmap_figure.id, x, y)
    page.mouse.click(sx, sy)
    wait_until(lambda: int(view.wiring.adjacency_matrix[src, dst]) == wiring_tables.next_polarity(before), page=page)
    # the browser's copy of the heatmap shows the new value too
    def shown():
        return page.evaluate(
            """([id, r, c]) => { for (const d of Bokeh.documents) { const m = d.get_model_by_id(id);
                 if (m) { const im = m.data.image[0]; return im[r * m.data.dw[0] + c]; } } }""",
            [view.image_source.id, int(y), int(x)],
        )

    wait_until(lambda: shown() == wiring_tables.next_polarity(before), page=page)
    page.screenshot(path=str(artifacts / "wiring_view.png"), full_page=True)
    assert not errors.real(), errors


def test_a_500_neuron_wiring_keeps_its_layers_fills_the_heatmap_and_names_neurons_on_hover(page, serve, artifacts):
    view = WiringView(build_wiring("AutoNCP", 500, 16, 64, seed=3))
    assert len(view.edge_source.data["src"]) == 0  # too many synapses to draw one by one: ribbons
    errors = console_errors(page)
    served = serve(view)
    page.goto(served.url)
    page.wait_for_selector(".bk-Canvas", timeout=20000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(artifacts / "wiring_view_500.png"), full_page=True)
    # the heatmap's ranges are the matrix (plus the role strips), so the matrix fills the plot
    rng = page.evaluate(
        """(id) => { for (const d of Bokeh.documents) { const f = d.get_model_by_id(id);
             if (f) return [f.x_range.start, f.x_range.end, f.y_range.start, f.y_range.end]; } }""",
        view.heatmap_figure.id)
    assert rng[1] == view._image["cols"] and rng[3] == view._image["rows"] and rng[0] > -2 and rng[2] > -2
    # hover over one heatmap cell names its source and target neuron with their roles
    src, dst = map(int, np.argwhere(view.wiring.adjacency_matrix != 0)[0])
    x, y = wiring_tables.cell_center(view._image, "neuron", src, dst)
    sx, sy = bokeh_to_screen(page, view.heatmap_figure.id, x, y)
    page.mouse.move(sx - 3, sy - 3)
    page.mouse.move(sx, sy, steps=3)
    page.wait_for_timeout(800)
    # Bokeh draws the tooltip inside the element's shadow root
    texts = page.locator(".bk-Tooltip").evaluate_all(
        "els => els.map(e => (e.shadowRoot ? e.shadowRoot.textContent : '') + e.textContent)")
    text = " | ".join(t for t in texts if t.strip())
    roles = wiring_tables.neuron_roles(view.wiring)
    assert f"n{src} ({roles[src]})" in text and f"n{dst} ({roles[dst]})" in text, text
    page.screenshot(path=str(artifacts / "wiring_view_500_hover.png"), full_page=True)
    assert not errors.real(), errors
