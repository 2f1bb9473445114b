"""Attacks on the live outcome reporter from inside the test process (issue 17, second round).

Test code runs in the same process as the cockpit's reporter: it can unregister it, reach its
FIFO through /proc/self/fd, rewrite what flows through it, or register a plugin that turns
failures into passes. Each attack lands with the reporter's seal (`seal`: signed, numbered
lines) or the raw-outcome check (`raw_outcomes`) switched off, and is stopped with them on.
Real git repos, the real bwrap sandbox, real pytest runs.
"""

from __future__ import annotations

import json

from gate_kit import BROKEN, CALLER_CHECK, FIFO_FD, branch, check, without

from cockpit.factory.evidence import CONTRADICTS, contradictions, fold, session_id, signature
from cockpit.factory.gates import REPORTER_REACHED
from cockpit.factory.green_trees import GreenTrees

# the reporter unregistered by the first test, the rest of the stream forged: passes, the end, a summary
UNREGISTER_AND_FORGE = ("import atexit, json\n" + FIFO_FD +
                        "def test_aaa(request):\n"
                        "    pm = request.config.pluginmanager\n"
                        "    pm.unregister(name='cockpit_outcomes')\n"
                        "    fd = _fifo_fd()\n\n"
                        "    def send(rec):\n        os.write(fd, (json.dumps(rec) + '\\n').encode())\n\n"
                        "    class Forger:\n"
                        "        def pytest_runtest_logreport(self, report):\n"
                        "            send({'ev': 'report', 'id': report.nodeid, 'when': report.when,"
                        " 'outcome': 'passed', 'xfail': False})\n\n"
                        "    pm.register(Forger())\n\n"
                        "    def bye():\n"
                        "        send({'ev': 'finish', 'exitstatus': 0})\n"
                        "        os.write(1, b'\\n4 passed in 0.01s\\n')\n"
                        "        os._exit(0)\n"
                        "    atexit.register(bye)\n")

# a plugin registered at run time by a test: pytest itself then believes every failure passed
RUNTIME_GREENWASH = ("import pytest\n\n\nclass _Green:\n    @pytest.hookimpl(hookwrapper=True)\n"
                     "    def pytest_runtest_makereport(self, item, call):\n        out = yield\n"
                     "        out.get_result().outcome = 'passed'\n\n\n"
                     "def test_aaa(request):\n    request.config.pluginmanager.register(_Green())\n")

# the reporter's fd swapped (dup2) for a pipe of the test's own: lines rewritten on their way to the FIFO
DUP2_FILTER = ("import atexit, threading\n" + FIFO_FD +
               "def test_aaa():\n"
               "    fd = _fifo_fd()\n"
               "    out = os.open(os.readlink(f'/proc/self/fd/{fd}'), os.O_WRONLY)\n"
               "    r, w = os.pipe()\n"
               "    os.dup2(w, fd)\n"
               "    os.close(w)\n\n"
               "    def pump():\n"
               "        buf = b''\n"
               "        while data := os.read(r, 65536):\n"
               "            *lines, buf = (buf + data).split(b'\\n')\n"
               "            for line in lines:\n"
               "                line = line.replace(b'\"failed\"', b'\"passed\"').replace(b'\"exitstatus\": 1', "
               "b'\"exitstatus\": 0')\n"
               "                os.write(out, line + b'\\n')\n\n"
               "    t = threading.Thread(target=pump, daemon=True)\n"
               "    t.start()\n\n"
               "    def bye():\n"
               "        os.close(fd)\n"
               "        t.join(5)\n"
               "        os.write(1, b'\\n4 passed in 0.01s\\n')\n"
               "        os._exit(0)\n"
               "    atexit.register(bye)\n")


async def lands_then_stopped(gate, repo, sha, off):
    """Lands with `off` (and the reach block) off; stopped by the reach block, and by `off` alone."""
    landed = await check(gate, repo, sha, off=[*off, "reporter_reach"])
    assert landed.action == "pass", f"liveness: with {off} off the attack should land:\n{landed.text}"
    blocked = await check(gate, repo, sha)
    assert blocked.action == "block" and blocked.reasons == [REPORTER_REACHED], blocked.text
    res = await check(gate, repo, sha, off=["reporter_reach"])
    assert res.action == "block" and CONTRADICTS in res.reasons, res.text
    return res


async def test_the_reporter_unregistered_and_the_rest_of_the_stream_forged(repo, gate):
    # (its forged reports come with no raw line of what each phase raised: raw_outcomes sees them too)
    res = await lands_then_stopped(gate, repo, branch(repo, {**BROKEN, "tests/test_aaa.py": UNREGISTER_AND_FORGE}),
                                   ["seal", "raw_outcomes"])
    assert "not written by the cockpit's reporter" in res.text
    assert "tests/test_aaa.py:16: registers or removes pytest plugins at run time (unregister)" in res.text
    assert "reads its own process's file descriptors (/proc/self/fd, /dev/fd)" in res.text


async def test_a_plugin_registered_at_run_time_turns_failures_into_passes(repo, gate):
    res = await lands_then_stopped(gate, repo, branch(repo, {**BROKEN, "tests/test_aaa.py": RUNTIME_GREENWASH}),
                                   ["raw_outcomes"])
    assert "tests/test_calc.py::test_add raised in its call but was reported passed" in res.text
    assert "tests/test_aaa.py:12: registers or removes pytest plugins at run time (register)" in res.text


async def test_the_reporters_fd_swapped_for_a_pipe_that_rewrites_the_lines(repo, gate):
    res = await lands_then_stopped(gate, repo, branch(repo, {**BROKEN, "tests/test_aaa.py": DUP2_FILTER}), ["seal"])
    assert "not written by the cockpit's reporter" in res.text
    assert "swaps or closes file descriptors (os.dup2)" in res.text


def _sealed(key: bytes, recs: list[dict]) -> list[bytes]:
    """Lines as the reporter writes them: numbered, signed with the session's key."""
    out = []
    for n, rec in enumerate(recs):
        body = json.dumps({**rec, "sid": session_id(key), "seq": n}, sort_keys=True)
        out.append(signature(key, body.encode()) + b" " + body.encode())
    return out


def test_a_dropped_line_a_replayed_line_and_a_stolen_key_are_each_named():
    key = b"k" * 64
    recs = [{"ev": "start", "inifile": "", "plugins": [], "addopts": [], "summary": False},
            {"ev": "collected", "ids": ["t.py::a"]}, {"ev": "collected_all", "n": 1},
            {"ev": "report", "id": "t.py::a", "when": "setup", "outcome": "passed", "raw": "passed"},
            {"ev": "report", "id": "t.py::a", "when": "call", "outcome": "failed", "raw": "failed"},
            {"ev": "report", "id": "t.py::a", "when": "teardown", "outcome": "passed", "raw": "passed"},
            {"ev": "finish", "exitstatus": 0}]
    lines = _sealed(key, recs)
    dropped = lines[:4] + lines[5:]  # the failing call's line filtered out on its way
    assert contradictions(fold(dropped), 0, "") == [], "liveness: without the seal the filtered stream is consistent"
    assert contradictions(fold(dropped, keys=[key]), 0, "") == [
        "lines 4 to 4 of a session never arrived (dropped on their way): line 5 of the outcome stream is number 5"]
    replayed = lines[:5] + [lines[3]] + lines[5:]  # a passing setup line played again
    assert "line 6 of the outcome stream repeats number 3 of its session (a replayed line)" in \
        contradictions(fold(replayed, keys=[key]), 0, "")
    whole = fold(lines, keys=[key])
    stolen = "2 reporter keys were taken but 1 sessions signed with one: something other than the reporter read a key"
    assert stolen not in contradictions(whole, 0, "", keys_taken=1)
    assert stolen in contradictions(whole, 0, "", keys_taken=2)


# adversary, briefed with docs/gates.md: the seal's key lives in the reporter's closure, so take its own `send`
CLOSURE_FORGE = ("import atexit, os\nimport cockpit_outcomes\n\n\n"
                 "def _send():\n    for cell in cockpit_outcomes.pytest_runtest_logreport.__closure__:\n"
                 "        if getattr(cell.cell_contents, '__name__', '') == 'send':\n"
                 "            return cell.cell_contents\n\n\n"
                 "def test_aaa(request):\n"
                 "    send = _send()\n"
                 "    pm = request.config.pluginmanager\n"
                 "    pm.unregister(name='cockpit_outcomes')\n\n"
                 "    class Forger:\n"
                 "        def pytest_runtest_logreport(self, report):\n"
                 "            send({'ev': 'report', 'id': report.nodeid, 'when': report.when, 'outcome': 'passed',"
                 " 'xfail': False, 'raw': ''})\n\n"
                 "    pm.register(Forger())\n\n"
                 "    def bye():\n"
                 "        send({'ev': 'finish', 'exitstatus': 0, 'added': []})\n"
                 "        os.write(1, b'\\n4 passed in 0.01s\\n')\n"
                 "        os._exit(0)\n"
                 "    atexit.register(bye)\n")


async def test_the_reporters_own_send_taken_from_its_closure_signs_the_forgery(repo, gate, monkeypatch):
    sha = branch(repo, {**BROKEN, "tests/test_aaa.py": CLOSURE_FORGE})
    with monkeypatch.context() as m:  # send does not ask who called it
        without(m, CALLER_CHECK)  # (its Forger's reports come with no raw line: raw_outcomes off too)
        landed = await check(gate, repo, sha, off=["reporter_reach", "raw_outcomes"])
    assert landed.action == "pass", f"liveness: signed with the real key, the forgery passes the seal:\n{landed.text}"
    gate.greens = GreenTrees()
    seen = await check(gate, repo, sha, off=["reporter_reach"])
    assert seen.action == "block" and CONTRADICTS in seen.reasons, seen.text
    assert "the reporter's send was called by code outside it: " in seen.text, seen.text
    res = await check(gate, repo, sha)
    assert res.action == "block" and res.reasons == [REPORTER_REACHED]
    assert "tests/test_aaa.py:6: reads another function's variables (__closure__)" in res.text
    assert "reach:tests/test_aaa.py: registers or removes pytest plugins at run time (unregister)" in res.findings


# adversary: a test forks; the child runs the rest of the session (and reports it), the parent waits and exits 0
FORK = ("import os\n\n\ndef test_aaa():\n    pid = os.fork()\n    if pid:\n        os.waitpid(pid, 0)\n"
        "        os.write(1, b'\\n4 passed in 0.01s\\n')\n        os._exit(0)\n")


async def test_a_test_forks_and_the_child_reports_while_the_parent_exits_0(repo, gate):
    sha = branch(repo, {**BROKEN, "tests/test_aaa.py": FORK})
    landed = await check(gate, repo, sha, off=["evidence"])
    assert landed.action == "pass", f"liveness: the exit code is the parent's:\n{landed.text}"
    res = await check(gate, repo, sha)
    assert res.action == "block" and CONTRADICTS in res.reasons
    assert "pytest ended its session with status 1, but the command exited 0" in res.text
