"""What the tests did, as they did it: per-test outcomes that leave pytest live, read by the cockpit.

A test run's exit code and printed summary are written by the code under test: an
`atexit` handler can turn a red run into exit 0, a test can print "5 passed". So the
cockpit injects a tiny pytest plugin from a read-only directory outside the tree
(`-p cockpit_outcomes`). The plugin writes one JSON line per report to a FIFO the cockpit
reads while the run goes on, outside the sandbox: what already left the process cannot be
rewritten afterwards. The cockpit then folds the lines and cross-checks them against the
exit code and the runner's own summary; any disagreement means "the test run contradicts
itself", which fails the gate (`contradictions`).

The stream also carries what the runner was configured with (ini file, plugins, addopts)
and every collected node id, so the same run counts the tests and names them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import os
import re
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PLUGIN_NAME = "cockpit_outcomes"
STREAM_CAP_BYTES = 32 * 1024 * 1024  # more than this on the stream is a flood, not a report
CONTRADICTS = "the test run contradicts itself"

_PLUGIN = r'''"""Written by the cockpit: reports each test report, as it happens, to the cockpit (nothing else).

Every line is numbered and signed with a key read once from the cockpit's key FIFO when this
module is imported (before any conftest or test module): a line the test code forges, drops or
rewrites does not verify. The signer and the FIFO's fd live only in send's default arguments.
"""
try:  # keyed BLAKE2 (a MAC by design) without hashlib, whose import loads OpenSSL: ~2 ms of every run
    from _blake2 import blake2b
except ImportError:  # another Python
    from hashlib import blake2b
import gc
import json
import operator
import os
import signal
import site
import sys
from fnmatch import fnmatch

import pytest

_RUNNER = ("_pytest", "pytest", "pluggy")
_RUNNER_UNITTEST = ("unittest.case", "unittest.suite", "unittest.result", "unittest.runner", "unittest.loader")
_ACTS_FOR_TESTS = ("_pytest.monkeypatch",)  # pytest's own code, but doing what a test asks


def _runner(name):
    name = str(name or "")
    return name.split(".")[0] in _RUNNER or name in _RUNNER_UNITTEST or name == __name__


def _reporter():
    path = os.environ.pop("COCKPIT_OUTCOMES", None)
    keys = os.environ.pop("COCKPIT_OUTCOMES_KEYS", None)
    only = os.environ.pop("COCKPIT_ONLY", None)  # the one test file this run collects (main's tests, each alone)
    os.environ.pop("PYTEST_ADDOPTS", None)
    if os.environ.get("PYTHONPATH") == os.path.dirname(os.path.abspath(__file__)):
        del os.environ["PYTHONPATH"]
    key = fd = None
    if path and keys:
        try:
            kfd = os.open(keys, os.O_RDONLY | os.O_NONBLOCK)
            try:
                key = os.read(kfd, 65).strip()  # one line: one session's key
            finally:
                os.close(kfd)
            fd = os.open(path, os.O_WRONLY)
        except OSError:
            key = fd = None
    sid = blake2b(key, digest_size=8).hexdigest() if key else ""
    seq = [0]
    before = set()
    watched = {}  # (id of owner, attribute) -> (owner, attribute, what it held): the runner's code

    # The way a tampering is told (the audit hook -> tamper -> send, and what they judge by) is bound as default
    # arguments, never through a closure cell: a cell can be read and rewritten unseen (adversary E-22, F-31 and
    # F-36 put their own function in the cell every hook calls `send` through), a function's defaults are one
    # tuple, and reading or replacing them is an audited event (the audit hook below tells). What send() calls is
    # taken now, before any test code: a test that swaps this module's `blake2b`, `os` or `json` afterwards
    # neither signs nor rewrites a line (adversary D-08, D-09). The key itself is nowhere: a keyed BLAKE2 object
    # signs, and no Python code reads a key back out of it. Code that puts its own function in place of send
    # and passes the lines on is seen calling it; one that signs for itself needs the signer, behind send's
    # defaults. Signals wait while a line is signed: a handler is handed the frame it interrupted.
    # the code of the functions that make their own lines (filled once they exist): any other caller is told,
    # this file's own code too (a loader that hands its call on could carry a stand-in's line: adversary J-64)
    callers = set()

    def send(rec, _fd=fd, _sign=blake2b(key=key, digest_size=32) if key else None, _sid=sid, _seq=seq,
             _write=os.write, _dumps=json.dumps, _frame=sys._getframe, _mask=signal.pthread_sigmask,
             _signals=signal.valid_signals(), _told=[], _callers=callers):
        if _fd is None or _sign is None:
            return
        held = _mask(signal.SIG_BLOCK, _signals)
        try:
            out = [rec]
            caller = _frame(1).f_code
            if caller not in _callers and not _told:
                _told.append(caller)
                out.insert(0, {"ev": "tamper", "what": "the reporter's send was called by code outside it: "
                               f"{caller.co_filename}:{caller.co_firstlineno} ({caller.co_name})"[:300]})
            for r in out:
                r["sid"], r["seq"] = _sid, _seq[0]
                _seq[0] += 1
                body = _dumps(r, sort_keys=True).encode()
                mac = _sign.copy()
                mac.update(body)
                _write(_fd, mac.hexdigest().encode() + b" " + body + b"\n")
        except Exception:  # a line that cannot be made is missing from the stream, which the cockpit sees
            pass
        finally:
            _mask(signal.SIG_SETMASK, held)

    def tamper(what, _told=set(), _send=send):
        what = what if type(what) is str else "?"
        if what not in _told:
            _told.add(what)
            _send({"ev": "tamper", "what": what[:300]})

    runner_dirs = tuple(os.path.dirname(f) + os.sep for f in (getattr(sys.modules.get(n), "__file__", "") or ""
                                                              for n in ("_pytest", "pytest", "pluggy")) if f)
    # pytest's own code, but doing what a test asks
    acts_for_tests = tuple(os.path.join(runner_dirs[0], m.split(".", 1)[1].replace(".", os.sep) + ".py")
                           for m in _ACTS_FOR_TESTS) if runner_dirs else ()
    own_file = os.path.abspath(__file__)
    # unittest's runner modules, by where the standard library is (not by what sys.modules says of them later)
    unittest_files = tuple(os.path.join(os.path.dirname(os.__file__), *m.split(".")) + ".py" for m in _RUNNER_UNITTEST)

    def runner_file(name, _dirs=runner_dirs, _own=own_file, _unittest=unittest_files):
        """Whether a code file name is the runner's or this reporter's own (unittest's runner modules too)."""
        name = name if type(name) is str else ""
        return name.startswith(_dirs) or name == _own or name in _unittest

    def by_runner(frame, _runner_file=runner_file, _acts=acts_for_tests):
        """Whether the code at `frame` is the runner itself (not a test, a product module or a conftest): by the
        file its code was compiled from. A module's __name__ is whatever its globals say (code exec'd with
        {'__name__': '_pytest.x'} walked gc unseen: adversary D-03); compiling code under a runner's file
        name is itself seen below."""
        where = frame.f_code.co_filename if frame is not None else ""
        return _runner_file(where) and not where.startswith(_acts)

    tree_root = os.getcwd().rstrip(os.sep) + os.sep
    # an environment inside the tree (.venv/) holds installed packages, not the tree's code
    prefixes = tuple(sorted({os.path.realpath(p) + os.sep for p in (sys.prefix, sys.exec_prefix, sys.base_prefix)}))

    def tree_code(frame, _root=tree_root, _prefixes=prefixes):
        """Whether the code at `frame` is the tree's (product, test or conftest code), not an installed package's."""
        where = frame.f_code.co_filename if frame is not None else ""
        return where.startswith(_root) and not where.startswith(_prefixes)

    def runner_code(value):
        """Whether `value` is the runner's own code (its functions live in pytest's or pluggy's files)."""
        code = getattr(getattr(value, "__func__", value), "__code__", None)
        return code is not None and str(code.co_filename).startswith(runner_dirs)

    # where the environment's installed packages live (the human installed them; a builder commits to a tree)
    installed = []

    def installed_dirs():
        """Read when first needed (sysconfig's import is ~1 ms of every run that never needs it)."""
        if not installed:
            import sysconfig
            installed.append(tuple(sorted({os.path.realpath(d) + os.sep for d in
                                           [*site.getsitepackages(), site.getusersitepackages(),
                                            sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
                                           if d})))
        return installed[0]

    function = type(tamper)
    # reading these functions' defaults or code from outside the runner reaches the signer, or what the audit
    # hook judges by
    core = frozenset(map(id, (send, tamper, runner_file, by_runner, tree_code)))

    def audit(event, args, _tamper=tamper, _by_runner=by_runner, _runner_file=runner_file, _tree_code=tree_code,
              _core=core, _frame=sys._getframe, _function=function, _id=id, _type=type, _len=len):
        # an audit hook stays for the life of the process: nothing imported after this module removes it; it is
        # reachable from nowhere (no name holds it), and what it calls is its own defaults
        if event == "object.__getattr__":
            if _id(args[0]) in _core and not _by_runner(_frame(1)):
                _tamper(f"the reporter's {args[0].__name__}.{args[1] if _len(args) > 1 else '?'} was read "
                        "(its signer, or what it judges by)")
        elif event == "ctypes.dlsym" and _len(args) > 1 and _type(args[1]) is str and args[1].startswith(("Py", "_Py")):
            # the interpreter's own C API from Python: a frame's locals written back, any object's memory (K-67
            # cleared pytest's excinfo through PyFrame_LocalsToFast)
            f, n = _frame(1), 0
            while f is not None and n < 8 and not _tree_code(f):
                f, n = f.f_back, n + 1
            if f is not None and n < 8:
                _tamper(f"the interpreter's C API ({args[1]}) was reached through ctypes from {f.f_code.co_filename}")
        elif event in ("sys.settrace", "sys.setprofile", "sys._current_frames"):
            if _tree_code(_frame(1)):  # a tracer or profiler is handed every frame, the reporter's too
                _tamper(f"{event}() was called by {_frame(1).f_code.co_filename}")
        elif event in ("gc.get_referents", "gc.get_referrers", "gc.get_objects") and not _by_runner(_frame(1)):
            _tamper(f"{event}() was called: it reaches any object behind its attributes, the runner's too")
        elif event == "compile" and _runner_file(args[1] if _len(args) > 1 else "") \
                and not _by_runner(_frame(1)):
            _tamper(f"code was compiled under the runner's file name {args[1]}")
        elif event == "code.__new__" and _runner_file(args[1] if _len(args) > 1 else "") \
                and not _by_runner(_frame(1)):
            _tamper(f"a code object was made under the runner's file name {args[1]}")
        elif event in ("object.__setattr__", "object.__delattr__") and _len(args) > 1 \
                and args[1] in ("__code__", "__defaults__", "__kwdefaults__") and _type(args[0]) is _function \
                and (_id(args[0]) in _core or _runner_file(args[0].__code__.co_filename)) \
                and not _by_runner(_frame(1)):
            # the function keeps its identity while its code changes: the snapshot cannot see it; the line leaves first
            _tamper(f"{getattr(args[0], '__module__', '')}.{getattr(args[0], '__qualname__', '')}.{args[1]} "
                    "changed in place")

    dirty = set()  # owners whose watched attributes changed since `groups` was built
    scanned = {}  # id(module or class) -> how many attributes it had when last added to `watched`

    def snapshot():
        seen = set()
        for name, module in list(sys.modules.items()):
            if module is None or not _runner(name) or name == __name__:
                continue
            if scanned.get(id(module)) == len(vars(module)):
                continue  # nothing added since its last scan; a watched attribute replaced is check_runner's to see
            scanned[id(module)] = len(vars(module))
            for attr, value in list(vars(module).items()):
                if callable(value):
                    key = (id(module), attr)
                    held = watched.get(key)
                    if held is None or held[2] is not value:
                        watched[key] = (module, attr, value)
                        dirty.add(key[0])
                if isinstance(value, type) and id(value) not in seen and _runner(getattr(value, "__module__", "")):
                    seen.add(id(value))
                    attrs = vars(value)
                    if scanned.get(id(value)) == len(attrs):
                        continue  # scanned before, nothing added since (a watched one replaced is check_runner's)
                    scanned[id(value)] = len(attrs)
                    for k, v in list(attrs.items()):
                        if (callable(v) or isinstance(v, (staticmethod, classmethod, property))) \
                                and (id(value), k) not in watched:
                            watched[(id(value), k)] = (value, k, v)
                            dirty.add(id(value))

    def installed_code(value):
        code = getattr(getattr(value, "__func__", value), "__code__", None)
        return code is not None and os.path.realpath(str(code.co_filename)).startswith(installed_dirs())

    # each owner's watched attributes read in one C call and compared by identity in C: ~15,000 entries cost
    # 2.7 ms per check in a Python loop, twice per test; this way a tenth of it. Taken now, before any test
    # code runs, so a test that replaces operator.is_not or builtins.any cannot blind the check.
    _getter, _is_not, _any, _map, _vars, _len, _tuple = operator.itemgetter, operator.is_not, any, map, vars, len, tuple
    groups = {}  # id(owner) -> (owner, attrs, getter, values as watched)

    def regroup():
        """Group again the owners whose watched attributes changed (all of them the first time)."""
        by = {}
        for (oid, attr), (owner, _, value) in watched.items():
            if oid in dirty:
                entry = by.setdefault(oid, (owner, [], []))
                entry[1].append(attr)
                entry[2].append(value)
        for oid, (owner, attrs, values) in by.items():
            groups[oid] = (owner, _tuple(attrs), _getter(*attrs), _tuple(values))
        dirty.clear()

    def check_runner(starting=False, installed=False):
        """Each watched attribute still holds what it held. While pytest starts (its own plugins configure
        themselves), a change to the runner's own code is the runner's doing; once tests run, none is.
        `installed`: before the first conftest, a change whose code is an installed package's (a plugin pytest
        loaded from the environment, e.g. hypothesis's) is the environment's doing, not the tree's."""
        if dirty:
            regroup()
        for oid, (owner, attrs, get, values) in list(groups.items()):
            try:
                now = get(_vars(owner))
                if not _any(_map(_is_not, (now,) if _len(attrs) == 1 else now, values)):
                    continue  # all of this owner's watched attributes hold what they held
            except KeyError:
                pass  # one was deleted: the attribute-by-attribute look below names it
            dirty.add(oid)
            for attr in attrs:
                key = (oid, attr)
                owner, attr, value = watched[key]
                now = _vars(owner).get(attr)
                if now is value:
                    continue
                if (starting and runner_code(now)) or (installed and installed_code(now)):
                    watched[key] = (owner, attr, now)
                    continue
                label = owner.__name__ if isinstance(owner, type(sys)) else f"{owner.__module__}.{owner.__qualname__}"
                tamper(f"{label}.{attr} replaced")

    snapshot()
    sys.addaudithook(audit)

    patched_told = set()
    test_file = ("test_", "conftest.py")

    def is_test_path(path):
        base = os.path.basename(str(path or ""))
        return base.startswith(test_file) or base.endswith("_test.py")

    # The product's values are read only in ways that run none of its code: a property or __getattr__ the
    # reporter's look ran told the product it was under the gate (adversary K-67 through __class__, L-70 through
    # __wrapped__, L-71 through a module subclass's __dict__), and a product that knows is a defeat device.
    module_dict = type(sys).__dict__["__dict__"].__get__  # the namespace the interpreter holds, past any property
    class_dict = type.__dict__["__dict__"].__get__
    Module = type(sys)
    method = type(pytest.hookimpl.__call__)  # types.MethodType, without importing types

    def own_dict(module):
        """A module's namespace, or {} for what is not a module."""
        return module_dict(module) if issubclass(type(module), Module) else {}

    def file_of(module):
        f = own_dict(module).get("__file__")
        return f if type(f) is str else ""

    def name_of(module):
        n = own_dict(module).get("__name__")
        return n if type(n) is str else "?"

    def plain_class(value):
        """A class made by `type` itself (no metaclass of the product's, whose code a look could run)."""
        return type(value) is type

    def defined_in(value):
        """The file the function or class `value` was written in (through decorators' __wrapped__), or '': only
        functions, bound methods and plain classes are looked into, by reads that run none of their code."""
        for _ in range(10):
            if type(value) is method:
                value = value.__func__
                continue
            inner = value.__dict__.get("__wrapped__") if type(value) is function else None
            if inner is None or inner is value:
                break
            value = inner
        if type(value) is function:
            return str(value.__code__.co_filename)
        if plain_class(value):
            m = class_dict(value).get("__module__")
            return file_of(sys.modules.get(m)) if type(m) is str else ""
        return ""

    plain_defs_of = {}

    def plain_defs(mfile):
        """The functions a module's source defines at top level with `def` and no decorator: at run time the module
        must hold exactly those (one compiled from its own file)."""
        if mfile not in plain_defs_of:
            names = set()
            try:
                import ast
                with open(mfile, "rb") as f:
                    body = ast.parse(f.read()).body
                names = {n.name for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                         and not n.decorator_list}
                # a later top-level assignment or import of the same name is the source's own doing
                names -= {t.id for n in body if isinstance(n, (ast.Assign, ast.AnnAssign, ast.AugAssign))
                          for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Name)}
                names -= {(a.asname or a.name).split(".")[0] for n in body if isinstance(n, (ast.Import, ast.ImportFrom))
                          for a in n.names}
            except (OSError, SyntaxError, ValueError, MemoryError):
                pass
            plain_defs_of[mfile] = names
        return plain_defs_of[mfile]

    def check_product(root, after="import"):
        """A module of the tree that is not a test file holds, at module level, a function or class written in a
        test file: test code replaced product code for everything that runs after (the cockpit judges whether
        the file that did it is the change's own). And a function its source defines with a plain `def` is
        something else at run time (a builtin, a function from elsewhere: adversary D-02): `after` says when it
        was first seen (at import, or after which test)."""
        root = str(root).rstrip(os.sep) + os.sep
        for name, module in list(sys.modules.items()):
            mfile = file_of(module)
            if not mfile.startswith(root) or is_test_path(mfile) or _runner(name):
                continue
            if mfile.endswith(".py"):
                for attr in plain_defs(mfile):
                    value = own_dict(module).get(attr)
                    code = value.__code__ if type(value) is function else None
                    if (code is None or os.path.realpath(str(code.co_filename)) != os.path.realpath(mfile)) \
                            and (name, attr) not in replaced_told:
                        replaced_told.add((name, attr))
                        now = f"{value.__module__}.{value.__qualname__}" if type(value) in (function, type(len)) \
                            else f"{type(value).__module__}.{type(value).__qualname__}"  # (no product code runs)
                        send({"ev": "replaced", "what": f"{name}.{attr}"[:200],
                              "now": now[:200], "after": str(after)[:300]})
            for attr, value in list(own_dict(module).items()):
                if not (callable(value) or issubclass(type(value), type)):
                    continue
                where = defined_in(value)
                if where.startswith(root) and is_test_path(where) and (name, attr, where) not in patched_told:
                    patched_told.add((name, attr, where))
                    send({"ev": "patched", "what": f"{name}.{attr}"[:200], "by": os.path.relpath(where, root)[:300]})

    replaced_told = set()

    # --- what each product module held when its own import ended (adversary F-30) ---------------------------
    # A test file that sets a product value at import (`calc._op = operator.add`) changes what every later test
    # sees; a builtin or a value no test file wrote has no file to judge it by, and a write of what the value
    # already is (dormant on main) only shows once a change makes the product differ. So each module of the
    # tree gets its values noted as its import (and the product imports it started) ends, through a finder in
    # front of the import system; once the test modules are imported, a value that is no longer what the
    # product left is sent (the cockpit compares with what main's own collection shows).
    at_import = {}  # id(module) -> (module, {attr: value}, {attr: copy of a dict's or list's items}, {class: ...})
    simple = (int, float, complex, str, bytes, bool, type(None))
    depth = {}  # thread -> product imports under way in it; pending snapshots wait for the outermost to end
    pending = {}
    from _thread import get_ident

    def product_file(origin):
        origin = str(origin or "")
        return origin.endswith(".py") and origin.startswith(tree_root) and not is_test_path(origin) \
            and origin != own_file and not os.path.realpath(origin).startswith(installed_dirs())

    def note(module):
        """What `module` holds now: its values, one level into its dicts and lists, its own classes' dicts."""
        try:
            values = dict(own_dict(module))
            inner = {a: (dict(v) if type(v) is dict else list(v)) for a, v in values.items() if type(v) in (dict, list)}
            classes = {a: dict(class_dict(v)) for a, v in values.items()
                       if plain_class(v) and class_dict(v).get("__module__") == name_of(module)}
            at_import[id(module)] = (module, values, inner, classes)
        except Exception:  # a module whose namespace cannot be read is simply not compared
            pass

    class ProductLoader:
        """Stands in for a product module's loader: runs it, then notes what the module holds."""

        def __init__(self, inner):
            self.inner = inner

        def create_module(self, spec):
            return self.inner.create_module(spec)

        def exec_module(self, module):
            me = get_ident()
            depth[me] = depth.get(me, 0) + 1
            try:
                self.inner.exec_module(module)
                pending.setdefault(me, []).append(module)
            finally:
                depth[me] -= 1
                if not depth[me]:  # the outermost product import: what it wired between modules is the product's
                    for m in pending.pop(me, ()):
                        note(m)

        def __getattr__(self, name):  # get_source, get_data, is_package, resource readers: the loader's own
            return getattr(self.inner, name)

    finding = set()  # threads inside the finder (a finder it asks may import)

    class ProductFinder:
        """First on sys.meta_path: asks the finders after it, and wraps the loader of a product module."""

        def find_spec(self, name, path=None, target=None):
            me = get_ident()
            if me in finding:
                return None
            finding.add(me)
            try:
                for finder in list(sys.meta_path):
                    find = getattr(finder, "find_spec", None) if finder is not self else None
                    spec = find(name, path, target) if find is not None else None
                    if spec is not None:
                        break
                else:
                    return None
            finally:
                finding.discard(me)
            if spec.loader is not None and hasattr(spec.loader, "exec_module") and product_file(spec.origin):
                spec.loader = ProductLoader(spec.loader)
            return spec

    product_finder = ProductFinder()
    sys.meta_path.insert(0, product_finder)
    initial = set(sys.modules)

    def same(a, b):
        return a is b or (type(a) is type(b) and type(a) in simple and (a == b or (a != a and b != b)))

    def test_module(module, python_files):
        """The product's ini calls it a test module (its python_files)."""
        base = os.path.basename(file_of(module))
        return any(fnmatch(base, p) for p in python_files)

    def changed_values(python_files):
        """Each product value that is no longer what the product's own import left: replaced or removed (what a
        module, a dict or list of it, or one of its classes gained is not judged: registries grow), as
        (what, id of its module, the module's attribute)."""
        out = []
        for mid, (module, values, inner, classes) in list(at_import.items()):
            if test_module(module, python_files):
                continue
            name = name_of(module)
            now = own_dict(module)
            for attr, was in values.items():
                if attr.startswith("__") and attr.endswith("__"):
                    continue
                cur = now.get(attr, same)
                if not same(cur, was):
                    out.append((f"{name}.{attr}", mid, attr))
                elif attr in inner:
                    old = inner[attr]
                    if type(old) is dict:
                        if any(k not in cur or not same(cur[k], v) for k, v in old.items()):
                            out.append((f"{name}.{attr}[...]", mid, attr))
                    elif len(cur) < len(old) or any(not same(x, y) for x, y in zip(cur, old)):
                        out.append((f"{name}.{attr}[...]", mid, attr))
                elif attr in classes:
                    own = class_dict(cur)
                    out += [(f"{name}.{attr}.{k}", mid, attr) for k, v in classes[attr].items()
                            if not (k.startswith("__") and k.endswith("__")) and not same(own.get(k, same), v)]
        return out

    # after each test: the product's functions and classes (module attributes that held one when its import
    # ended), each owner's read in one C call and compared by identity, as check_runner does
    runtime_groups = {}  # id(module) -> (module, attrs, getter, values as imported) or None
    runtime_told = set()  # (id(module), attribute) sent already (at import or after a test)

    def values_after(nodeid, python_files):
        """A product function or class a test left replaced once it and its fixtures were done (adversary F-30's
        dormant patch moved into a test's body): sent with the test's id and the module's file."""
        if len(runtime_groups) != len(at_import):
            for mid, (module, values, _, _) in list(at_import.items()):
                if mid in runtime_groups:
                    continue
                attrs = () if test_module(module, python_files) else _tuple(
                    a for a, v in values.items() if callable(v) and not (a.startswith("__") and a.endswith("__")))
                runtime_groups[mid] = (module, attrs, _getter(*attrs), _tuple(values[a] for a in attrs)) \
                    if attrs else None
        for mid, group in list(runtime_groups.items()):
            if group is None:
                continue
            module, attrs, get, was = group
            try:
                now = get(own_dict(module))
                if not _any(_map(_is_not, (now,) if _len(attrs) == 1 else now, was)):
                    continue
            except KeyError:
                pass
            d = own_dict(module)
            for attr, value in zip(attrs, was):
                if d.get(attr, same) is not value and (mid, attr) not in runtime_told:
                    runtime_told.add((mid, attr))
                    where = file_of(module)
                    send({"ev": "changed", "what": f"{name_of(module)}.{attr}"[:300], "attr": attr[:200],
                          "file": os.path.relpath(where, rootpath[0] or tree_root)[:300], "after": str(nodeid)[:300]})


    @pytest.hookimpl(tryfirst=True)
    def pytest_load_initial_conftests(early_config):
        # the plugins pytest loads from the environment (entry points, -p, PYTEST_PLUGINS) are in; no conftest,
        # test or product module has run yet: what they changed in the runner is where the watch starts
        check_runner(starting=True, installed=True)
        snapshot()
        if product_finder in sys.meta_path:  # ahead of pytest's assertion rewriter: it loads product modules too
            sys.meta_path.remove(product_finder)
        sys.meta_path.insert(0, product_finder)

    rootpath = [""]

    @pytest.hookimpl(trylast=True)
    def pytest_configure(config):
        rootpath[0] = str(config.rootpath)
        check_runner(starting=True)  # after every other plugin's configure
        snapshot()  # and what pytest loaded since this module
        names = sorted(n for n, p in config.pluginmanager.list_name_plugin()
                       if p is not None and "/" not in n and not n.isdigit())
        ini = getattr(config, "inipath", None)
        ini = os.path.relpath(str(ini), str(config.rootpath)) if ini else ""
        # pytest prints its "N passed in Xs" line unless its terminal plugin is off or -qq was given
        summary = config.pluginmanager.has_plugin("terminal") and int(config.getoption("verbose") or 0) > -2
        send({"ev": "start", "pid": os.getpid(), "inifile": ini, "summary": bool(summary),
              "plugins": names, "addopts": list(config.getini("addopts")),
              "python_files": [str(f) for f in config.getini("python_files")],
              "testpaths": [str(t) for t in config.getini("testpaths")],
              "doctest_globs": [str(g) for g in (getattr(config.option, "doctestglob", None) or ["test*.txt"])]})
        configured.update(id(p) for p in config.pluginmanager.get_plugins())

    configured = set()

    def collection_plugins(session):
        """What was registered as a plugin while the tests were collected (a conftest as its path, another by
        its name or type): main's run registers its own the same way, a test module's registration is new."""
        pm = session.config.pluginmanager
        conftests = set(map(id, getattr(pm, "_conftest_plugins", ())))
        root = str(session.config.rootpath)
        out = set()
        for name, p in pm.list_name_plugin():
            if p is None or id(p) in configured:
                continue
            if id(p) in conftests:
                out.add("conftest " + os.path.relpath(str(getattr(p, "__file__", name)), root))
            else:
                out.add(type(p).__module__ + "." + type(p).__qualname__ if str(name).isdigit() else str(name)[:200])
        return sorted(out)

    def pytest_ignore_collect(collection_path, config):
        """With `only`, every other file is left uncollected (directories are walked, conftests load as ever): a
        test file's code then reaches its own tests alone (a dormant patch or washer in another file of main's
        cannot put this one's right, adversary F-30, F-36, H-41..54)."""
        if not only or os.path.isdir(collection_path):
            return None
        return None if kept(collection_path, config) else True

    def kept(path, config):
        name = os.path.basename(str(path))
        return name in ("conftest.py", "__init__.py") or os.path.relpath(str(path), str(config.rootpath)) == only

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_collect_file(file_path, parent):
        """A file the command names itself is collected whatever pytest_ignore_collect says: with `only`, what
        any plugin would collect from another file (a module, a doctest) is dropped before anything imports it."""
        out = yield
        if only and not kept(file_path, parent.config) and out.get_result():
            # (an empty stand-in, not nothing: a file named on the command line that yields no collector at
            # all is an error, "not found")
            out.force_result([Elsewhere.from_parent(parent, path=file_path)])

    class Elsewhere(pytest.File):
        """A test file another run of main's tests alone takes: nothing of it is imported in this one."""

        def collect(self):
            return []

    def pytest_collectreport(report):
        if report.failed:
            send({"ev": "collect_error", "id": report.nodeid})
        elif report.skipped:
            send({"ev": "collect_skip", "id": report.nodeid})

    def written_in(item):
        """The file the function pytest runs for `item` was written in, through decorators (its own file for a
        test as written; another for one a test module imported, or test code put in its place)."""
        fn = getattr(item, "obj", None)
        where = defined_in(fn)  # the product-patch check's own unwrapping
        return os.path.realpath(where) if where else "(no code: " + type(fn).__name__ + ")"

    def report_written(session, items, when):
        root = str(session.config.rootpath)
        for item in items:
            if not isinstance(item, pytest.Function):
                continue
            where = written_in(item)
            if where != os.path.realpath(str(item.path)) and (item.nodeid, where, when) not in written_told:
                written_told.add((item.nodeid, where, when))
                rel = os.path.relpath(where, root) if where.startswith(root + os.sep) else where
                send({"ev": "written", "id": item.nodeid, "in": rel[:300], "when": when})

    written_told = set()

    changed_told = set()
    python_files = []  # the product's ini's, once its tests are collected

    def pytest_collection_finish(session):
        check_product(session.config.rootpath)
        python_files[:] = [str(f) for f in session.config.getini("python_files")]
        past = [(f"{n} (imported past the watch)", id(m), "") for n, m in list(sys.modules.items())
                if id(m) not in at_import and n not in initial and product_file(file_of(m))]
        for what, mid, attr in [*changed_values(python_files), *past]:
            runtime_told.add((mid, attr))
            if what not in changed_told:
                changed_told.add(what)
                send({"ev": "changed", "what": what[:300], "after": "import"})
        report_written(session, session.items, "collected")
        ids = [item.nodeid for item in session.items]
        for i in range(0, len(ids), 40):  # short lines: each write to the pipe is atomic
            send({"ev": "collected", "ids": ids[i:i + 40]})
        send({"ev": "collected_all", "n": len(ids), "plugins": collection_plugins(session)})
        before.update(id(p) for p in session.config.pluginmanager.get_plugins())

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_makereport(item, call, _send=send, _skip=(pytest.skip.Exception, pytest.xfail.Exception),
                                  _tamper=tamper, _frame=sys._getframe, _type=type, _issubclass=issubclass):
        # what the phase really did, sent before any plugin gets to rewrite the report and before this reporter
        # calls anything: code that comes to run inside a check below (a closure cell of it rewritten, adversary
        # I-57 clearing `call.excinfo` from report_written's place) finds it already gone. By the exception's
        # type, never its `__class__` (a property that runs the product's code: J-60)
        exc = call.excinfo
        _send({"ev": "raw", "id": item.nodeid, "when": call.when,
               "raw": "passed" if exc is None else "skipped" if _issubclass(_type(exc.value), _skip) else "failed"})
        # and pluggy calls this very hookwrapper, not a stand-in put in its HookImpl that ran first (J-63)
        code = _frame(0).f_code
        if not any(getattr(getattr(h, "function", None), "__code__", None) is code
                   for h in item.config.hook.pytest_runtest_makereport.get_hookimpls()):
            _tamper("the reporter's makereport hookwrapper was replaced in pluggy's HookImpl")
        if call.when == "call":  # what ran may have been put in the item's place after collection
            report_written(item.session, (item,), "run")
        yield

    def pytest_runtest_logreport(report):
        # the report leaves first, the checks come after it (what they call cannot rewrite a line already gone)
        send({"ev": "report", "id": report.nodeid, "when": report.when, "outcome": report.outcome,
               "xfail": hasattr(report, "wasxfail")})
        if report.when != "setup":
            check_runner()
        if report.when == "teardown":  # after the test's own patches are undone (monkeypatch, mock.patch)
            check_product(rootpath[0], report.nodeid)
            values_after(report.nodeid, python_files)

    def pytest_sessionfinish(session, exitstatus):
        if only and exitstatus == 5 and not session.testscollected:
            # one session of a command that names other test files itself: nothing of it is this run's to run
            session.exitstatus = exitstatus = 0
        check_runner()
        added = sorted({type(p).__module__ + "." + type(p).__qualname__
                        for p in session.config.pluginmanager.get_plugins() if id(p) not in before} if before else ())
        send({"ev": "finish", "exitstatus": int(exitstatus), "added": added})

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(config):
        # the session is over and reported: what is left is the interpreter's exit, whose collections walk
        # every object pytest made (~20-40 ms of a small run). Frozen objects are skipped; refcounting still
        # frees them, atexit still runs, the exit code is already pytest's.
        gc.freeze()

    callers.update(f.__code__ for f in (tamper, check_product, values_after, pytest_configure, pytest_collectreport,
                                         report_written, pytest_collection_finish, pytest_runtest_makereport,
                                         pytest_runtest_logreport, pytest_sessionfinish))
    return (pytest_unconfigure, pytest_load_initial_conftests, pytest_configure, pytest_collectreport, pytest_collection_finish,
            pytest_runtest_makereport, pytest_runtest_logreport, pytest_sessionfinish, pytest_ignore_collect,
            pytest_collect_file)


(pytest_unconfigure, pytest_load_initial_conftests, pytest_configure, pytest_collectreport,
 pytest_collection_finish, pytest_runtest_makereport, pytest_runtest_logreport, pytest_sessionfinish,
 pytest_ignore_collect, pytest_collect_file) = _reporter()
del _reporter
'''


@dataclass
class Evidence:
    """The folded stream of one run."""

    sessions: int = 0
    inifile: str = ""
    plugins: list[str] = field(default_factory=list)
    addopts: list[str] = field(default_factory=list)
    python_files: list[str] = field(default_factory=list)  # what the runner takes for a test file (its ini)
    testpaths: list[str] = field(default_factory=list)  # where it looks for them (its ini)
    doctest_globs: list[str] = field(default_factory=list)  # the text files it collects as doctests
    collected: list[str] = field(default_factory=list)
    collected_n: int | None = None  # the count the plugin announced after the ids
    collect_errors: list[str] = field(default_factory=list)
    collect_skips: list[str] = field(default_factory=list)  # whole modules skipped at import
    reports: list[tuple[str, str, str, bool]] = field(default_factory=list)  # (id, when, outcome, xfail)
    finish: int | None = None  # the exit status of the last session to end
    ended: int = 0  # sessions that ended (a command may run pytest more than once, one after the other)
    summary_expected: bool = True  # pytest will print its summary line (not -qq, terminal plugin on)
    problems: list[str] = field(default_factory=list)  # what was wrong with the stream itself
    # (id, when, what the phase really did, what its report said): a plugin rewrote the report
    rewritten: list[tuple[str, str, str, str]] = field(default_factory=list)
    # (id, when) reported with no line of what the phase raised before it (the reporter's hookwrapper never ran)
    unraw: list[tuple[str, str]] = field(default_factory=list)
    added_plugins: list[str] = field(default_factory=list)  # registered while the tests ran
    signed_sessions: set[str] = field(default_factory=set)  # the keys the stream's sessions signed with
    tampered: list[str] = field(default_factory=list)  # the runner's code changed by the code under test
    # (module.attribute of the tree, test file): product code replaced, session-wide, by code a test file wrote
    patched: list[tuple[str, str]] = field(default_factory=list)
    # per session, in order: (the ids it collected, the ids it reported an outcome for)
    per_session: list[tuple[list[str], set[str]]] = field(default_factory=list)
    collect_plugins: list[str] = field(default_factory=list)  # registered while collecting (conftests too)
    # (module.function, what it holds instead, "import" or the test after which it was seen): a plain `def` of
    # the tree's source that is something else at run time
    replaced: list[tuple[str, str, str]] = field(default_factory=list)
    # (module.value, "import" or a test id, the module's file, the attribute): a value of the tree's product that
    # was no longer what the product's own import left once the test modules were imported (a dict's or list's
    # items, a class's attributes too), or a function or class of it a test left replaced
    changed: list[tuple[str, str, str, str]] = field(default_factory=list)
    # test id -> the file its function was written in, where that is not the test's own file
    written: dict[str, str] = field(default_factory=dict)

    @property
    def reported(self) -> bool:
        return self.sessions > 0

    def outcomes(self) -> dict[str, str]:
        """Each test's outcome: passed, failed, error, skipped, xfailed or xpassed."""
        out: dict[str, str] = {}
        for nodeid, when, outcome, xfail in self.reports:
            prev = out.get(nodeid)
            if outcome == "failed":
                now = "failed" if when == "call" else "error"
            elif outcome == "skipped":
                now = "xfailed" if xfail else "skipped"
            elif when == "call":
                now = "xpassed" if xfail else "passed"
            else:
                now = prev or "passed"  # a passing setup or teardown changes nothing
            if prev in ("failed", "error"):
                now = prev
            out[nodeid] = now
        return out

    def stats(self) -> Counter[str]:
        """Counted the way pytest's own summary counts them (per report, not per test)."""
        c: Counter[str] = Counter()
        for _nodeid, when, outcome, xfail in self.reports:
            if outcome == "failed":
                c["failed" if when == "call" else "error"] += 1
            elif outcome == "skipped":
                c["xfailed" if xfail else "skipped"] += 1
            elif when == "call":
                c["xpassed" if xfail else "passed"] += 1
        c["error"] += len(self.collect_errors)
        c["skipped"] += len(self.collect_skips)
        return +c


def session_id(key: bytes) -> str:
    """How a line names the key it is signed with (the reporter computes the same)."""
    return hashlib.blake2b(key, digest_size=8).hexdigest()


def signature(key: bytes, body: bytes) -> bytes:
    """A line's signature: keyed BLAKE2b, what the reporter computes (64 hex digits)."""
    return hashlib.blake2b(body, key=key, digest_size=32).hexdigest().encode()


def _unsealed(n: int, raw: bytes, keys: dict[str, bytes], next_n: dict[str, int]) -> tuple[dict | None, str]:
    """The record of a line signed with one of `keys` and next in its session's numbering, or why not."""
    if not re.match(rb"[0-9a-f]{64} ", raw):
        return None, f"line {n} of the outcome stream was not written by the cockpit's reporter (unsigned): {raw[:120]!r}"
    mac, _, body = raw.partition(b" ")
    try:
        rec = json.loads(body)
        key = keys.get(str(rec.get("sid")))
    except (ValueError, AttributeError):
        return None, f"line {n} of the outcome stream is not a report: {raw[:120]!r}"
    if key is None or not hmac.compare_digest(mac, signature(key, body)):
        return None, (f"line {n} of the outcome stream was not written by the cockpit's reporter (its signature does "
                      f"not verify): {body[:120]!r}")
    sid, due, seq = str(rec["sid"]), next_n.get(str(rec["sid"]), 0), rec.get("seq")
    if not isinstance(seq, int) or seq < due:
        return None, f"line {n} of the outcome stream repeats number {seq} of its session (a replayed line)"
    next_n[sid] = seq + 1
    if seq > due:  # authentic, but what came before it in its session did not arrive
        return rec, (f"lines {due} to {seq - 1} of a session never arrived (dropped on their way): "
                     f"line {n} of the outcome stream is number {seq}")
    return rec, ""


def fold(lines: list[bytes], *, overflow: bool = False, keys: list[bytes] | None = None) -> Evidence:
    """Fold the stream's lines; with `keys`, only lines signed with one of them and in sequence count
    (the seal; None reads every line as it comes, the gate's behaviour before the seal)."""
    ev = Evidence()
    if overflow:
        ev.problems.append(f"the outcome stream carried more than {STREAM_CAP_BYTES} bytes (a flood, not reports)")
    seen: dict[tuple[str, str], str] = {}
    raws: dict[tuple[str, str], str] = {}  # what each phase really did, sent before its report was made
    by_sid = {session_id(k): k for k in keys or ()}
    next_n: dict[str, int] = {}
    for n, raw in enumerate(lines, 1):
        try:
            if keys is not None:
                rec, why = _unsealed(n, raw, by_sid, next_n)
                if why:
                    ev.problems.append(why)
                if rec is None:
                    continue
                ev.signed_sessions.add(str(rec["sid"]))
            else:
                rec = json.loads(raw.partition(b" ")[2] if re.match(rb"[0-9a-f]{64} ", raw) else raw)
            kind = rec["ev"]
            if kind == "start":
                if ev.sessions > ev.ended:
                    ev.problems.append("a pytest session started inside another one")
                ev.sessions += 1
                ev.per_session.append(([], set()))
                ev.inifile = str(rec.get("inifile", ""))
                ev.plugins = [str(p) for p in rec.get("plugins", [])]
                ev.addopts = [str(a) for a in rec.get("addopts", [])]
                ev.python_files = [str(f) for f in rec.get("python_files", [])]
                ev.testpaths = [str(t) for t in rec.get("testpaths", [])]
                ev.doctest_globs = [str(g) for g in rec.get("doctest_globs", [])]
                ev.summary_expected = bool(rec.get("summary", True))
            elif kind == "collected":
                ev.collected += [str(i) for i in rec["ids"]]
                if ev.per_session:
                    ev.per_session[-1][0].extend(str(i) for i in rec["ids"])
            elif kind == "collected_all":
                ev.collected_n = (ev.collected_n or 0) + int(rec["n"])
                ev.collect_plugins += [str(x) for x in rec.get("plugins", []) if str(x) not in ev.collect_plugins]
            elif kind == "collect_error":
                ev.collect_errors.append(str(rec["id"]))
            elif kind == "collect_skip":
                ev.collect_skips.append(str(rec["id"]))
            elif kind == "report":
                key = (str(rec["id"]), str(rec["when"]))
                outcome = str(rec["outcome"])
                if key in seen and seen[key] != outcome:  # a repeat that agrees (subtests, reruns) is no forgery
                    ev.problems.append(f"{key[0]} reported its {key[1]} twice: {seen[key]}, then {outcome}")
                seen.setdefault(key, outcome)
                xfail = bool(rec.get("xfail"))
                ev.reports.append((key[0], key[1], outcome, xfail))
                if ev.per_session:
                    ev.per_session[-1][1].add(key[0])
                real = raws.pop(key, None) or str(rec.get("raw") or "") or None
                if real is None:
                    ev.unraw.append(key)
                elif (real != "passed" and outcome == "passed") or (real == "failed" and outcome == "skipped" and not xfail):
                    ev.rewritten.append((key[0], key[1], str(real), outcome))
            elif kind == "raw":
                key = (str(rec["id"]), str(rec["when"]))
                if key in raws and raws[key] != str(rec["raw"]):  # (J-64 sent a second one, "passed")
                    ev.problems.append(f"{key[0]} had two lines of what its {key[1]} raised: {raws[key]}, then "
                                       f"{rec['raw']}")
                raws.setdefault(key, str(rec["raw"]))
            elif kind == "finish":
                if ev.ended >= ev.sessions:
                    ev.problems.append("a session reported its end twice")
                ev.ended += 1
                ev.finish = int(rec["exitstatus"])
                ev.added_plugins += [str(p) for p in rec.get("added", [])]
            elif kind == "tamper":
                ev.tampered.append(str(rec["what"]))
            elif kind == "written":
                ev.written.setdefault(str(rec["id"]), str(rec.get("in", "")))
            elif kind == "patched":
                ev.patched.append((str(rec["what"]), str(rec["by"])))
            elif kind == "replaced":
                ev.replaced.append((str(rec["what"]), str(rec.get("now", "")), str(rec.get("after", ""))))
            elif kind == "changed":
                ev.changed.append((str(rec["what"]), str(rec.get("after", "")), str(rec.get("file", "")),
                                   str(rec.get("attr", ""))))
            else:
                ev.problems.append(f"line {n} of the outcome stream is of an unknown kind {kind!r}")
        except (ValueError, KeyError, TypeError):
            ev.problems.append(f"line {n} of the outcome stream is not a report: {raw[:120]!r}")
    return ev


_SUMMARY_WORD = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?|rerun)\b")


def runner_summary(output: str, sessions: int = 1) -> Counter[str] | None:
    """The counts of pytest's last summary lines in the output ("1 failed, 3 passed in 0.12s"), one per session
    the run reported, summed; None when there is none."""
    total: Counter[str] = Counter()
    found_lines = 0
    for line in reversed(output.splitlines()):
        if found_lines >= sessions:
            break
        if not re.search(r"\bin [\d.]+s\b", line):
            continue
        found = _SUMMARY_WORD.findall(line)
        if found or "no tests ran" in line:
            found_lines += 1
            for n, word in found:
                word = {"errors": "error", "warnings": "warning"}.get(word, word)
                if word not in ("deselected", "warning", "rerun"):
                    total[word] += int(n)
    return total if found_lines else None


def contradictions(ev: Evidence, exit_code: int | None, output: str, *, truncated: bool = False,
                   raw_outcomes: bool = True, keys_taken: int | None = None, runner_intact: bool = True,
                   per_session: bool = True) -> list[str]:
    """Where the run disagrees with itself; checked when the exit code says it passed.

    `raw_outcomes`: a report whose phase raised but that says it passed is a contradiction.
    `keys_taken`: how many session keys left the key FIFO; each must sign a session of the stream.
    `runner_intact`: the code under test changing the runner's own classes or functions is a contradiction
    (what the runner then reports is what that code says)."""
    why = list(ev.problems)
    if runner_intact and ev.tampered:
        why.append(f"the code under test changed the test runner: {'; '.join(ev.tampered[:5])}")
    if raw_outcomes:
        why += [f"{i} raised in its {when} but was reported {said} (a plugin rewrote the report)"
                for i, when, _real, said in ev.rewritten[:10]]
        why += [f"{i} was reported for its {when} with no line of what it raised (the reporter's hookwrapper "
                "never ran for it)" for i, when in ev.unraw[:10]]
        if ev.added_plugins:
            why.append(f"plugins were registered while the tests ran: {', '.join(ev.added_plugins[:10])}")
    if keys_taken is not None and keys_taken != len(ev.signed_sessions):
        why.append(f"{keys_taken} reporter keys were taken but {len(ev.signed_sessions)} sessions signed with one: "
                   "something other than the reporter read a key")
    if not ev.reported:
        return why + ["pytest never reported a single outcome: the cockpit's reporter was not loaded "
                      "(disabled with -p no:..., or the command did not run pytest)"]
    if ev.finish is None or ev.ended < ev.sessions:
        why.append("pytest never ended its session: the process stopped early (os._exit, a kill, a crash)")
    elif ev.finish != exit_code:
        why.append(f"pytest ended its session with status {ev.finish}, but the command exited {exit_code}")
    outcomes = ev.outcomes()
    bad = sorted(i for i, o in outcomes.items() if o in ("failed", "error"))
    if bad and exit_code == 0:
        why.append(f"exit code 0 although {len(bad)} failed: {', '.join(bad[:10])}")
    if ev.collect_errors and exit_code == 0:
        why.append(f"exit code 0 although collecting failed: {', '.join(ev.collect_errors[:10])}")
    if ev.collected_n is not None and ev.collected_n != len(ev.collected):
        why.append(f"pytest announced {ev.collected_n} collected tests but named {len(ev.collected)}")
    collected = set(ev.collected)
    silent = [i for i in ev.collected if i not in outcomes]
    if silent:
        why.append(f"{len(silent)} collected tests never reported: {', '.join(silent[:10])}")
    # each session answers for what it collected: one stopped after collecting (pytest.exit, returncode 0) while
    # another session reports the same ids (one the test code started itself, configured its own way) is not
    # a run of the tests it collected (adversary D-07)
    for n, (ids, said) in enumerate(ev.per_session if per_session and ev.sessions > 1 else [], 1):
        gone = [i for i in ids if i not in said]
        if gone:
            why.append(f"session {n} of {ev.sessions} collected {len(ids)} tests and reported {len(gone)} of them "
                       f"nowhere in that session: {', '.join(gone[:10])}")
    foreign = sorted(set(outcomes) - collected)
    if foreign:
        why.append(f"{len(foreign)} outcomes for tests that were never collected: {', '.join(foreign[:10])}")
    said = runner_summary(output, max(ev.sessions, 1))
    if said is None:
        if not truncated and ev.summary_expected:
            why.append("the runner printed no summary line")
    else:
        seen = ev.stats()
        if said != seen:
            fmt = lambda c: ", ".join(f"{n} {w}" for w, n in sorted(c.items())) or "nothing"  # noqa: E731
            why.append(f"the runner's summary says {fmt(said)}, the reports say {fmt(seen)}")
    return why


class _Lines(asyncio.Protocol):
    def __init__(self, cap: int) -> None:
        self.buf = bytearray()
        self.lines: list[bytes] = []
        self.total = 0
        self.cap = cap
        self.overflow = False
        self.eof = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.total += len(data)
        if self.total > self.cap:
            self.overflow = True
            return
        self.buf += data
        *done, rest = self.buf.split(b"\n")
        self.lines += [bytes(d) for d in done if d.strip()]
        self.buf = bytearray(rest)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.buf.strip() and not self.overflow:
            self.lines.append(bytes(self.buf))
        if not self.eof.done():
            self.eof.set_result(None)


class OutcomeStream:
    """A scratch dir outside the tree with the reporter plugin and the FIFO it writes; read live.

    Bind the dir read-only into the sandbox (`readable`): writing a FIFO works on a read-only
    mount, replacing the plugin or the FIFO does not.

    The seal: a second FIFO holds `sessions` fresh keys, one line each; every pytest session's
    reporter takes one when it is imported (before any conftest or test module) and signs and
    numbers its lines with it. Whatever is left is read back after the run: a key taken that
    signed nothing was read by something else."""

    def __init__(self, scratch_root: Path, *, cap: int = STREAM_CAP_BYTES, sessions: int = 8) -> None:
        self.dir = Path(scratch_root) / f"outcomes-{uuid.uuid4().hex[:12]}"
        self.dir.mkdir(parents=True)
        (self.dir / f"{PLUGIN_NAME}.py").write_text(_PLUGIN, encoding="utf-8")
        self.fifo = self.dir / "outcomes.fifo"
        os.mkfifo(self.fifo, 0o600)
        self.key_fifo = self.dir / "keys.fifo"
        os.mkfifo(self.key_fifo, 0o600)
        self.keys = [secrets.token_hex(32).encode() for _ in range(sessions)]
        self.keys_taken: int | None = None  # known after `close`
        self._key_fd: int | None = None
        self.cap = cap
        self._keep: int | None = None
        self._transport: asyncio.ReadTransport | None = None
        self._proto: _Lines | None = None

    def env(self, *, collect_only: bool = False, only: str | None = None) -> dict[str, str]:
        """What the run's environment carries to the reporter (which takes it out before any test code runs);
        `only`: the one test file (relative to the runner's rootdir) the run collects."""
        opts = f"{'--collect-only ' if collect_only else ''}-p {PLUGIN_NAME}"
        return {"PYTEST_ADDOPTS": opts, "PYTHONPATH": str(self.dir), "COCKPIT_OUTCOMES": str(self.fifo),
                "COCKPIT_OUTCOMES_KEYS": str(self.key_fifo), **({"COCKPIT_ONLY": only} if only else {})}

    async def open(self) -> None:
        """Start reading before the run starts; our own idle writer keeps EOF away until `close`."""
        rfd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
        self._keep = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        # held open read-write for the run: the keys stay in the pipe until a reporter takes one
        self._key_fd = os.open(self.key_fifo, os.O_RDWR | os.O_NONBLOCK)
        os.write(self._key_fd, b"".join(k + b"\n" for k in self.keys))
        loop = asyncio.get_running_loop()
        self._transport, self._proto = await loop.connect_read_pipe(lambda: _Lines(self.cap),
                                                                    os.fdopen(rfd, "rb", buffering=0))

    def _left_keys(self) -> int:
        """Read back the keys no reporter took; how many were taken."""
        if self._key_fd is None:
            return 0
        left = b""
        try:
            while chunk := os.read(self._key_fd, 65536):
                left += chunk
        except BlockingIOError:
            pass
        finally:
            os.close(self._key_fd)
            self._key_fd = None
        return len(self.keys) - len([k for k in left.split(b"\n") if k.strip()])

    async def close(self, grace_s: float = 2.0, *, seal: bool = True) -> Evidence:
        """After the run: drop our writer, drain what is left, fold it (`seal`: only signed, numbered lines)."""
        if self._keep is not None:
            os.close(self._keep)
            self._keep = None
        self.keys_taken = self._left_keys()
        proto = self._proto
        if proto is None:
            return fold([])
        try:
            await asyncio.wait_for(asyncio.shield(proto.eof), grace_s)
        except asyncio.TimeoutError:  # a writer escaped the sandbox's kill: stop listening
            proto.lines.append(b'{"ev": "stream held open after the run"}')
        finally:
            if self._transport is not None:
                self._transport.close()
        return fold(proto.lines, overflow=proto.overflow, keys=self.keys if seal else None)

    def remove(self) -> None:
        if self._keep is not None:
            os.close(self._keep)
            self._keep = None
        if self._key_fd is not None:
            os.close(self._key_fd)
            self._key_fd = None
        if self._transport is not None:
            self._transport.close()
        shutil.rmtree(self.dir, ignore_errors=True)
