"""A figure export button in the served page downloads the server-drawn SVG of the current result."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.ui.app_fixtures import open_app, served_app  # noqa: F401 - the served demo app, one model per page

SVG = "{http://www.w3.org/2000/svg}"


def test_cell_graph_svg_button_downloads_the_figure_of_the_current_block(page, served_app, tmp_path):
    served, apps = served_app
    app, _ = open_app(page, served, apps)
    app.model_view.block = 1
    button = page.get_by_role("button", name="cell graph .svg")
    button.scroll_into_view_if_needed()
    with page.expect_download(timeout=30000) as info:
        button.click()
    path = tmp_path / "cell_graph.svg"
    info.value.save_as(path)
    assert info.value.suggested_filename == "cell_graph.svg"
    texts = [t.text for t in ET.parse(path).getroot().iter(SVG + "text") if t.text]
    assert "cells of block 1" in texts and "64x128 · 8.2k" in texts
