"""Layout snapshots of the main screens, compared with the baselines in tests/tui/snapshots/.

The screens show a live robot, so their pixels change every tick; what must not change by
accident is their layout: which panels exist, where they sit and how big they are at a given
terminal size, their titles, and the keys the footer offers. Each snapshot records exactly
that (every widget with an id: class, region, border title; the footer's keys), at 140x44.

A deliberate layout change: rerun with TAKEOVER_UPDATE_SNAPSHOTS=1 and commit the new JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from textual.screen import Screen
from textual.widgets import Footer
from tui_support import wait_for

from takeover.config import Config, TuiConfig
from takeover.hw.base import open_link
from takeover.tui.app import TakeoverApp, make_app
from takeover.tui.dialogs import HelpScreen
from takeover.tui.episodes import EpisodesScreen
from takeover.tui.rounds import RoundsScreen

SIZE = (140, 44)
BASELINES = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("TAKEOVER_UPDATE_SNAPSHOTS") == "1"


def layout(app: TakeoverApp, screen: Screen[Any]) -> dict[str, Any]:
    widgets = []
    for w in screen.query("*"):
        if not w.id:
            continue
        r = w.region
        widgets.append({"id": w.id, "class": type(w).__name__,
                        "region": [r.x, r.y, r.width, r.height],
                        **({"title": str(w.border_title)} if w.border_title else {})})
    keys = sorted({b.key for _, b, enabled, _ in app.active_bindings.values()
                   if b.show and enabled})
    footers = list(screen.query(Footer))
    return {"screen": type(screen).__name__, "size": list(SIZE),
            "widgets": sorted(widgets, key=lambda x: x["id"]),
            "footer_keys": keys if footers else []}


def check(name: str, snapshot: dict[str, Any]) -> None:
    path = BASELINES / f"{name}.json"
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"no baseline {path}; run with TAKEOVER_UPDATE_SNAPSHOTS=1 and commit it")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(snapshot, indent=1) + "\n")
        return
    baseline = json.loads(path.read_text())
    assert snapshot == baseline, (
        f"the layout of {name} changed; if on purpose, rerun with TAKEOVER_UPDATE_SNAPSHOTS=1\n"
        f"now:      {json.dumps(snapshot)[:2000]}\nbaseline: {json.dumps(baseline)[:2000]}")


async def test_main_screens_keep_their_layout(workspace: Path) -> None:
    config = Config(tui=TuiConfig(camera="halfblock"))  # the same renderer on every terminal
    app = make_app(config, open_link("sim://?seed=3"), None, workspace, use_gamepad=False)
    async with app.run_test(size=SIZE) as pilot:
        # Some panels size to their text: wait until every line they show has arrived (the
        # loop's timing comes once a second).
        await wait_for(pilot, lambda: app.connected and app.session.loop.latest is not None
                       and app.timing is not None, what="the link and the loop's timing")
        await pilot.pause(0.3)
        await pilot.pause()
        check("drive", layout(app, app.screen))
        for key, screen_type, name in (("2", EpisodesScreen, "episodes"),
                                       ("3", RoundsScreen, "rounds"),
                                       ("question_mark", HelpScreen, "help")):
            await pilot.press(key)
            await wait_for(pilot, lambda t=screen_type: isinstance(app.screen, t), what=name)
            await pilot.pause()
            check(name, layout(app, app.screen))
