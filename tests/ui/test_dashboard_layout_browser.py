"""Layout at the README's screenshot size (1280x800): no control of a tab runs past the edge of its card."""

from __future__ import annotations

from tests.ui.app_fixtures import open_app, script_errors, served_app  # noqa: F401 - served_app is a fixture
from tests.ui.conftest import wait_until
from xlstm_viz.dashboard.app import TAB_LOADING


def test_every_over_time_field_is_inside_the_card_at_1280_px(page, served_app):  # noqa: F811
    served, apps = served_app
    page.set_viewport_size({"width": 1280, "height": 800})
    app, errors = open_app(page, served, apps)
    page.get_by_text("Over time", exact=True).first.click()
    page.get_by_text(TAB_LOADING.format("Over time")).wait_for(state="hidden", timeout=60000)
    card = page.locator(".bk-tab", has_text="Over time").first  # the tab header row spans the card
    for label in ("block", "probe", "statistic", "top-k", "first token shown", "tokens shown"):
        box = page.get_by_label(label, exact=True).first
        wait_until(lambda: box.bounding_box() is not None, page=page)
        b = box.bounding_box()
        assert b["x"] + b["width"] <= 1280 - 20, f"the {label!r} field ends at x={b['x'] + b['width']:.0f} of 1280"
    assert card.is_visible()
    assert not script_errors(errors), errors
