"""`cockpit rate` and `cockpit report` on the demo factory (its seeded history is in the real store),
and the HTML report opened in headless Chromium."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import struct
import subprocess
import zlib

import pytest

from cockpit.cli import main
from cockpit.config import load_factory
from cockpit.demo.build import DEMO_TASKS, build_demo
from cockpit.demo.history import STORIES, TITLE_PREFIX
from cockpit.domain.metrics import METRICS, TOO_FEW
from cockpit.factory.rate import CHARTED
from cockpit.factory.status import status
from cockpit.store import Store

METRIC_NAMES = {m.name for m in METRICS}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo factory as `cockpit demo` writes it: history seeded, the live tasks queued (not run)."""
    return build_demo(tmp_path_factory.mktemp("demo") / "factory")


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_rate_json_has_every_metric_per_product(demo, capsys):
    code, out, _ = run(capsys, "rate", "--json", "--factory", str(demo))
    assert code == 0
    data = json.loads(out)
    live = {p for p, _, _ in DEMO_TASKS}
    assert set(data["products"]) == live | set(STORIES)
    for name, p in [("factory", data["factory"]), *data["products"].items()]:
        assert set(p["totals"]) == METRIC_NAMES, name
        assert set(p["trend"]) == METRIC_NAMES, name
        assert p["weekly"] and all(METRIC_NAMES <= set(w) for w in p["weekly"]), name
        assert p["daily"] and all(METRIC_NAMES <= set(d) for d in p["daily"]), name
        assert p["verdict"]["verdict"] in ("compounding", "flat", "worse", TOO_FEW) and p["verdict"]["line"]
    assert data["window"]["trend_per"] == "week" and len(data["factory"]["weekly"]) == 6
    verdicts = {n: p["verdict"]["verdict"] for n, p in data["products"].items()}
    # the history's three stories, each told by its own numbers
    assert {n: verdicts[n] for n in STORIES} == {n: s.shows for n, s in STORIES.items()}
    assert all(data["products"][n]["demo_history"] for n in STORIES)
    # the live demo has not run yet: nothing merged, too few to tell, and not marked as demo history
    for name in live:
        assert verdicts[name] == TOO_FEW and not data["products"][name]["demo_history"]
        assert data["products"][name]["totals"]["merged"] == 0
    billing = data["products"]["history-billing"]
    assert billing["totals"]["merged"] >= 20 and billing["totals"]["usd"] > 0 and billing["totals"]["sessions"] > 0
    assert billing["totals"]["lessons_per_session"] > 0 and billing["totals"]["cache_read_ratio"] > 0


def test_rate_text_for_one_product_and_a_window(demo, capsys):
    code, out, _ = run(capsys, "rate", "--product", "history-mobile", "--factory", str(demo))
    assert code == 0
    assert "history-mobile: worse: 0 of 6 improving; 6 worse" in out
    assert out.count("\n    ") == len(METRICS)  # one line per metric
    code, out, _ = run(capsys, "rate", "--json", "--since", "15d", "--product", "history-billing", "--factory",
                       str(demo))
    data = json.loads(out)
    assert code == 0 and list(data["products"]) == ["history-billing"]
    assert data["window"]["days"] == pytest.approx(15, abs=0.01) and data["window"]["trend_per"] == "week"
    code, _, err = run(capsys, "rate", "--product", "nope", "--factory", str(demo))
    assert code == 1 and "no product 'nope'" in err
    code, _, err = run(capsys, "rate", "--since", "last tuesday", "--factory", str(demo))
    assert code == 1 and "--since 'last tuesday'" in err


def test_the_history_is_marked_real_and_leaves_the_live_tasks_alone(demo):
    config = load_factory(demo)

    async def read():
        store = await Store.open(config.store_path)
        try:
            events = await store.events()
            return events, await status(config, store)
        finally:
            await store.close()

    events, st = asyncio.run(read())
    products = {p["name"]: p for p in st["products"]}
    live_ids = [t["id"] for p in products.values() for t in p["tasks"] if p["name"] not in STORIES]
    assert sorted(live_ids, key=lambda i: int(i[1:])) == [f"T{i + 1}" for i in range(len(DEMO_TASKS))]
    history = [t for n in STORIES for t in products[n]["tasks"]]
    assert history and all(t["id"].startswith("H") and t["title"].startswith(TITLE_PREFIX) for t in history)
    assert all(t["state"] == "done" for t in history)  # nothing of it waits for the human or for an agent
    # every event the seeder wrote says so; the memory's own events name a history product
    for e in events:
        if e.product in STORIES and not e.kind.startswith("memory."):
            assert e.data.get("demo_history") is True, e
    # the ledger holds every settlement at its own time: its sum is the tasks' spend
    assert st["spend_usd"] == pytest.approx(sum(t["spend_usd"] for p in products.values() for t in p["tasks"]),
                                            abs=1e-6)
    # each merged commit the events name is on main of a real repository
    for name in STORIES:
        repo = demo.parent / "products" / name
        for t in products[name]["tasks"][:3] + products[name]["tasks"][-3:]:
            for sha in (t["commit"], t["merged_commit"]):
                subprocess.run(["git", "merge-base", "--is-ancestor", sha, "main"], cwd=repo, check=True)


# --- the HTML report in a real browser ------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:  # Debian's package; a browser download at test time is not possible here
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, capture_output=True)
        exe = shutil.which("chromium")
        if exe is None:
            subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, capture_output=True)
            exe = shutil.which("chromium")
    assert exe, "chromium is needed to check the HTML report: apt-get install chromium"
    return exe


def browser(exe: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


def png_pixels(data: bytes, max_rows: int | None = None) -> tuple[int, int, list[bytes]]:
    """(width, height, pixels of the top `max_rows` rows) of an 8-bit RGB/RGBA PNG: enough to see what was drawn."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = channels = 0
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev = [], bytearray(stride)
    for y in range(min(height, max_rows or height)):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r[i:i + 3]) for r in rows for i in range(0, stride, channels)]


def test_the_html_report_opens_in_chromium_and_shows_its_charts(demo, capsys, chromium, tmp_path):
    out = tmp_path / "rate.html"
    code, printed, _ = run(capsys, "report", "--out", str(out), "--factory", str(demo))
    assert code == 0 and printed.strip() == str(out)
    html = out.read_text()
    # self-contained: nothing to fetch (no script, stylesheet, image or font from anywhere)
    assert not re.search(r"<(script|link|img|iframe)\b|url\(|@import|src=", html, re.I)
    assert "history-billing" in html and "demo history: simulated" in html

    dom = browser(chromium, tmp_path, "--dump-dom", out.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    svgs = re.findall(r'<svg[^>]*class="spark"[^>]*data-metric="([a-z_0-9]+)"', dom.stdout)
    scopes = 1 + len({p for p, _, _ in DEMO_TASKS} | set(STORIES))
    assert len(svgs) == scopes * len(CHARTED) and set(svgs) == set(CHARTED)
    assert dom.stdout.count('class="trend"') >= 3 * len(CHARTED)  # the history's fitted lines are drawn
    assert "<polyline" in dom.stdout and "<rect" in dom.stdout

    shot = tmp_path / "rate.png"
    # the top of the page (the verdicts, the factory's charts) at half scale: decoding it here is pure Python
    r = browser(chromium, tmp_path, "--window-size=1400,1800", "--force-device-scale-factor=0.5",
                f"--screenshot={shot}", out.as_uri())
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    width, height, pixels = png_pixels(shot.read_bytes(), max_rows=400)  # the verdicts and the first charts
    assert (width, height) == (700, 900) and len(pixels) == 700 * 400
    colors = set(pixels)
    drawn = sum(1 for p in pixels if p != b"\xfa\xfa\xfa")  # not the page background
    assert len(colors) > 50 and drawn > len(pixels) // 20
    # the verdict badges in their colours (compounding green, worse red), and the bars of the throughput chart
    assert {b"\x2e\x7d\x32", b"\xc6\x28\x28", b"\x90\xa4\xae"} <= colors
