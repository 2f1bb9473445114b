"""Which module an import finds, from git alone: a change may not put a stand-in where pytest looks first.

pytest's default import mode (`prepend`) puts, for each test module and conftest.py, the first directory
upward without an `__init__.py` first on `sys.path`. A module placed there is what `from calc import add` in
main's unchanged tests imports: an adversary session (B-04) broke `calc`, added `tests/calc.py`, a correct
copy, and the run was honest and green. So the guard lists, for main and for the change, every import
location (a directory on the import path, a top-level import name) and judges each one the change adds.

A location is "regular" (a module file of any importable suffix, a package with an `__init__`, or a
symlink, which may point at either) or a namespace portion (a directory without `__init__`): a namespace
portion never wins over a regular module, it only merges with other portions of the same name.

Code can put any directory first (`getattr(sys, 'pa' + 'th').insert(...)`, which no scan sees), so a module
the change adds where nothing else puts it on the path is judged by its name alone (`off_path`); and a name
an installed package imports as it loads is as much a target as one main's code imports (`installed_names`).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import re
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from importlib.machinery import all_suffixes
from pathlib import Path

from .workspaces import _run_git, git

# longest first: "calc.cpython-312-x86_64-linux-gnu.so" loses its whole suffix, not just ".so"
IMPORTABLE = tuple(sorted({*all_suffixes(), ".pyc", ".pyw"}, key=len, reverse=True))
SYMLINK = "120000"
DEFAULT_PYTHON_FILES = ("test_*.py", "*_test.py")
_IMPORT_LINE = re.compile(r"^\s*import\s+(.+)$|^\s*from\s+([A-Za-z_]\w*)[\w.]*\s+import\b")
_DYNAMIC = re.compile(r"""(?:import_module|__import__)\(\s*['"]([A-Za-z_]\w*)""")
_SETTING = r"^\s*{}\s*=\s*(.+)$"
CONFIG_FILES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


def _dir(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _join(d: str, name: str) -> str:
    return f"{d}/{name}" if d else name


def _strip_suffix(name: str) -> str | None:
    for s in IMPORTABLE:
        if name.endswith(s) and len(name) > len(s):
            return name[: -len(s)]
    return None


def is_test_module(path: str, python_files: tuple[str, ...] = DEFAULT_PYTHON_FILES) -> bool:
    """A file pytest imports after putting its directory on sys.path: a test module or a conftest.py."""
    name = path.rsplit("/", 1)[-1]
    return name == "conftest.py" or (name.endswith(".py") and any(fnmatchcase(name, p) for p in python_files))


@dataclass(frozen=True)
class Location:
    where: str  # the directory on the import path ("" is the repository root)
    name: str  # the top-level import name found there
    path: str  # what provides it: the module file, the package's __init__, the symlink, or the directory
    namespace: bool

    def __str__(self) -> str:
        return self.path


async def tree(repo: Path, rev: str) -> dict[str, str]:
    """path -> git mode of every file of `rev` (a symlink is one entry, never followed)."""
    out = await git("ls-tree", "-r", "-z", "--full-tree", rev, cwd=repo)
    files: dict[str, str] = {}
    for rec in out.split("\0"):
        meta, _, path = rec.partition("\t")
        if path:
            files[path] = meta.split(" ", 1)[0]
    return files


def _inits(files: dict[str, str]) -> set[str]:
    """The directories that are regular packages (an __init__ of any importable suffix)."""
    return {_dir(f) for f in files if "/" in f and _strip_suffix(f.rsplit("/", 1)[-1]) == "__init__"}


def setting(texts: dict[str, str], key: str) -> list[str]:
    """The values of a pytest setting (`pythonpath`, `python_files`) in any of the runner's config files:
    one line, space- or comma-separated, or a TOML list on that line."""
    out: list[str] = []
    for text in texts.values():
        for value in re.findall(_SETTING.format(key), text, re.M):
            for item in re.split(r"[\s,]+", value.strip().strip("[]")):
                item = item.strip("'\"")
                if item and not item.startswith(("#", ";")):
                    out.append(item)
    return out


def configured_path(texts: dict[str, str]) -> set[str]:
    """The directories a `pythonpath =` setting adds."""
    return {"" if p in (".", "./") else p.removeprefix("./").rstrip("/") for p in setting(texts, "pythonpath")}


def import_dirs(files: dict[str, str], configured: set[str],
                python_files: tuple[str, ...] = DEFAULT_PYTHON_FILES) -> set[str]:
    """The directories on sys.path while main's tests run: the root (`python -m pytest`, the rootdir), src/,
    `pythonpath =` entries, and for each test module or conftest.py the first directory upward without an
    __init__ (pytest's `prepend` basedir)."""
    inits = _inits(files)
    out = {"", *configured}
    if any(f.startswith("src/") for f in files):
        out.add("src")
    for f in files:
        if is_test_module(f, python_files):
            d = _dir(f)
            while d and d in inits:
                d = _dir(d)
            out.add(d)
    return out


def locations(files: dict[str, str], dirs: set[str]) -> dict[tuple[str, str], Location]:
    """(directory on the path, import name) -> what provides it, for every importable thing of `files`."""
    out: dict[tuple[str, str], Location] = {}
    for f, mode in files.items():
        parts = f.split("/")
        link = mode == SYMLINK
        importable = link or _strip_suffix(parts[-1]) is not None
        if not importable:
            continue
        for i in range(len(parts)):
            where = "/".join(parts[:i])
            if where not in dirs:
                continue
            top = parts[i]
            if i == len(parts) - 1:  # a module file (or a symlink) right in the directory
                name = _strip_suffix(top) or (top if link else None)
                loc = Location(where, name or "", f, False)
            else:  # a directory holding importable files: a package, or a namespace portion
                name = top
                pkg = _join(where, top)
                init = next((g for g in (f"{pkg}/__init__{s}" for s in IMPORTABLE) if g in files), None)
                loc = Location(where, name, init or pkg + "/", init is None)
            if not name or not name.isidentifier():
                continue
            have = out.get((where, name))
            if have is None or (have.namespace and not loc.namespace):
                out[(where, name)] = loc
    return out


async def imported_names(repo: Path, rev: str) -> dict[str, list[str]]:
    """Top-level module name -> the Python files of `rev` importing it (import lines, importlib calls)."""
    rc, out, _ = await _run_git("grep", "-I", "-E", "-e", r"^\s*(import|from)\s+[A-Za-z_]", "-e",
                                r"(import_module|__import__)\(", rev, "--", "*.py", cwd=repo)
    names: dict[str, list[str]] = {}
    if rc != 0:
        return names
    for line in out.splitlines():
        _, path, text = (line.split(":", 2) + ["", ""])[:3]
        found: list[str] = []
        m = _IMPORT_LINE.match(text)
        if m and m.group(1):
            found += [part.strip().split(" ")[0].split(".")[0] for part in m.group(1).split("#")[0].split(",")]
        elif m:
            found.append(m.group(2))
        found += _DYNAMIC.findall(text)
        for n in found:
            if n.isidentifier():
                names.setdefault(n, []).append(path)
    return names


_installed: dict[str, str] | None = None


async def installed_names() -> dict[str, str]:
    """Top-level import name -> the installed distribution providing it, in the environment the cockpit runs
    (the tests run with it unless the product's command names another interpreter). Read once, off the loop."""
    global _installed
    if _installed is None:
        found = await asyncio.to_thread(importlib.metadata.packages_distributions)
        _installed = {n: d[0] for n, d in found.items() if n.isidentifier() and d}
    return _installed


def off_path(files: dict[str, str], was_files: dict[str, str], dirs: set[str], known: set[str]
             ) -> list[tuple[str, str]]:
    """[(file, its import name)] for each importable file the change adds in a directory nothing puts on the
    import path (no test module, no conftest, no `pythonpath =`) and that is no package: such a module is
    imported under its own name only after code edits sys.path (which a scan cannot always see:
    `getattr(sys, 'pa' + 'th')`). A directory inside a package main already has (a namespace package's
    subdirectory, say) is that package's, not a stand-in's."""
    inits = _inits(files)
    out: list[tuple[str, str]] = []
    for f in sorted(set(files) - set(was_files)):
        where, base = _dir(f), f.rsplit("/", 1)[-1]
        name = _strip_suffix(base) or (base if files[f] == SYMLINK else None)
        if name == "__init__" and where:  # a package: its directory is the module
            where, name = _dir(where), where.rsplit("/", 1)[-1]
        if not name or not name.isidentifier() or name == "__init__" or where in dirs or where in inits:
            continue
        up = where
        while up not in dirs:  # the nearest directory on the path ("" always is)
            up = _dir(up)
        top = where[len(up):].lstrip("/").split("/")[0]
        if top not in known:
            out.append((f, name))
    return out


async def shadows(repo: Path, base: str, commit: str) -> list[tuple[str, str]]:
    """[(path, why)] for each import location the change adds that takes a module from what main's tests
    imported: a standard-library module, another location of the same name (the product's own module, a
    helper elsewhere), a name main's code imports (an installed package), or a module only the tests' path
    holds that the product's own code imports."""
    was, now = await tree(repo, base), await tree(repo, commit)
    configs = {}
    for f in CONFIG_FILES:
        if f in now:
            configs[f] = await git("cat-file", "-p", f"{commit}:{f}", cwd=repo, check=False)
    configured = configured_path(configs)
    python_files = (*DEFAULT_PYTHON_FILES, *setting(configs, "python_files"))
    before = locations(was, import_dirs(was, configured, python_files))
    dirs = import_dirs(now, configured, python_files)
    after = locations(now, dirs)
    new = [loc for key, loc in sorted(after.items()) if key not in before]
    main_names = {loc.name: loc for loc in sorted(before.values(), key=lambda loc: loc.path)}
    regular = {loc.name for loc in before.values() if not loc.namespace}
    stray = off_path(now, was, dirs, regular)  # a superset of what is judged below: main's imports not read yet
    if not new and not stray:
        return []
    by_name: dict[str, list[Location]] = {}
    for loc in after.values():
        by_name.setdefault(loc.name, []).append(loc)
    out: list[tuple[str, str]] = []
    unjudged: list[Location] = []
    for loc in new:
        others = [o for o in by_name[loc.name] if o != loc and (not loc.namespace or o.namespace)]
        if loc.namespace and others:
            out.append((loc.path, f"{loc.path} merges into the product's namespace package {loc.name} "
                                  f"({others[0]}) ahead of it"))
        elif loc.namespace:
            continue  # a directory without __init__ never wins over a regular module
        elif others:
            out.append((loc.path, f"{loc.path} shadows the product's module {loc.name} ({others[0]})"))
        elif loc.name in sys.stdlib_module_names:
            out.append((loc.path, f"{loc.path} shadows the standard library's module {loc.name}"))
        else:
            unjudged.append(loc)
    if not unjudged and not stray:
        return out
    main_imports = await imported_names(repo, base)
    installed = await installed_names()
    test_dirs = dirs - {"", "src", *configured}
    now_imports = await imported_names(repo, commit) if any(u.where in test_dirs for u in unjudged) else {}
    in_repo_on_main = {name for _, name in before}
    for loc in unjudged:
        # a name main found in the repository and the change moved is the moved module; one main found
        # outside it (an installed package) is now taken from the tests' path
        if loc.name in main_imports and loc.name not in in_repo_on_main:
            out.append((loc.path, f"{loc.path} would be imported instead of {loc.name}, which main's code imports "
                                  f"from elsewhere ({main_imports[loc.name][0]})"))
            continue
        if loc.name in installed and loc.name not in in_repo_on_main:  # what an installed package imports (requests
            # imports charset_normalizer as it loads)
            out.append((loc.path, f"{loc.path} shadows the installed package's module {loc.name} "
                                  f"({installed[loc.name]})"))
            continue
        product_code = [p for p in now_imports.get(loc.name, []) if not is_test_module(p, python_files)
                        and not any(p.startswith(d + "/") for d in test_dirs)]
        if loc.where in test_dirs and product_code:
            out.append((loc.path, f"{loc.path} is imported by the product's own code ({product_code[0]}), but only "
                                  f"pytest puts {loc.where}/ on the import path"))
    for path, name in off_path(now, was, dirs, {*regular, *main_imports}):
        if name in main_names:
            whose = f"the product's module {name} ({main_names[name]})"
        elif name in sys.stdlib_module_names:
            whose = f"the standard library's module {name}"
        elif name in main_imports:
            whose = f"{name}, which main's code imports ({main_imports[name][0]})"
        elif name in installed:
            whose = f"the installed package's module {name} ({installed[name]})"
        else:
            continue
        out.append((path, f"{path} stands in for {whose} from a directory nothing puts on the import path "
                          f"({_dir(path)}/): only an edit of sys.path imports it under that name"))
    return out
