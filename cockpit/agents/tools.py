"""The file and command tools an agent calls, confined to its task's worktree (invariant 6, docs/architecture.md).

Every path an agent names is relative to the worktree. It is refused when it is absolute,
climbs out with `..`, resolves (through any symlink) outside the worktree, or names
`.git` (git internals and hooks: a hook an agent wrote would run outside the sandbox the
next time anyone commits). Writes are stricter still: they never go through a symlink,
not even one that points inside.

The checks are made on paths, and paths can change between a check and its use. So the
file is then opened component by component from a descriptor of the worktree root with
`O_NOFOLLOW` (openat-style): a symlink swapped in after the check makes the open fail
instead of letting a read or a write escape.

Commands never run here: `run_command` hands them to the OS sandbox
(`cockpit.host.sandbox.Sandbox`), which makes only the worktree (and the scratch dir)
writable. A refusal or failure raises `ToolError`, which the agent loop returns to the
model as a tool_result with is_error=true; its message says exactly why.
"""

from __future__ import annotations

import asyncio
import errno
import fnmatch
import io
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from cockpit.host.safe_files import open_nofollow

if TYPE_CHECKING:  # pragma: no cover - typing only
    from cockpit.host.sandbox import Sandbox

__all__ = ["ToolError", "ToolSpec", "WorktreeTools", "open_nofollow"]


class ToolError(Exception):
    """A refusal or failure, returned to the model as an error tool_result; the message says why."""


@dataclass
class ToolSpec:
    """One tool as the model sees it."""

    name: str
    description: str
    input_schema: dict

    def to_api(self) -> dict:
        """The Anthropic Messages API tool dict."""
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}


def _schema(properties: dict[str, dict], required: Sequence[str]) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_PATH = {"type": "string", "description": "Path relative to the worktree root, e.g. 'src/app.py'."}

SPECS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            "read_file",
            "Read a text file of the worktree. Lines come numbered like `cat -n` (the numbers "
            "are not part of the file). Long output is capped; the note says how to read on.",
            _schema(
                {
                    "path": _PATH,
                    "offset_line": {"type": "integer", "minimum": 1, "description": "First line to show (1-based)."},
                    "limit_lines": {"type": "integer", "minimum": 1, "description": "How many lines to show at most."},
                },
                ["path"],
            ),
        ),
        ToolSpec(
            "write_file",
            "Create or overwrite a file of the worktree with the given content (UTF-8). "
            "Missing parent directories are created. Symlinks and '.git' are refused.",
            _schema({"path": _PATH, "content": {"type": "string"}}, ["path", "content"]),
        ),
        ToolSpec(
            "edit_file",
            "Replace the exact text `old` with `new` in a file. `old` must occur exactly once "
            "(include surrounding lines to make it unique) unless replace_all is true.",
            _schema(
                {
                    "path": _PATH,
                    "old": {"type": "string", "description": "Exact text to replace, whitespace included."},
                    "new": {"type": "string", "description": "Replacement text."},
                    "replace_all": {"type": "boolean", "description": "Replace every occurrence (default false)."},
                },
                ["path", "old", "new"],
            ),
        ),
        ToolSpec(
            "list_files",
            "List files under a directory of the worktree, recursively, as sorted paths relative "
            "to the worktree root ('.git' skipped, symlinks listed but not followed). `pattern` is "
            "an optional glob: without '/' it matches file names ('*.py'), with '/' whole paths.",
            _schema(
                {
                    "path": {"type": "string", "description": "Directory to list, relative to the worktree (default '.')."},
                    "pattern": {"type": "string", "description": "Glob filter, e.g. '*.py' or 'tests/*'."},
                },
                [],
            ),
        ),
        ToolSpec(
            "search_text",
            "Search the files under a path for a string (or a regular expression with regex=true: RE2 syntax, "
            "like Python's re without backreferences or lookaround). "
            "Prints 'file:line: text' per match; '.git', binary files and symlinks are skipped.",
            _schema(
                {
                    "pattern": {"type": "string", "description": "Text to find (case-sensitive)."},
                    "path": {"type": "string", "description": "File or directory to search (default '.')."},
                    "regex": {"type": "boolean", "description": "Treat pattern as a regular expression (RE2)."},
                },
                ["pattern"],
            ),
        ),
        ToolSpec(
            "run_command",
            "Run a shell command (bash -c) in the worktree root, inside a sandbox: only the worktree "
            "is writable, there is no network, and there is a timeout and an output cap. Returns "
            "the exit code and the combined output; a failing command is a normal result.",
            _schema({"command": {"type": "string", "description": "The shell command line."}}, ["command"]),
        ),
    )
}

_JSON_TYPES: dict[str, tuple[str, Any]] = {
    "string": ("a string", str),
    "integer": ("an integer", int),
    "boolean": ("a boolean", bool),
}

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY_SNIFF = 8192


def _iter_lines(f: io.BufferedReader, chunk: int) -> Iterator[tuple[bytes, bool]]:
    """Yield (line, cut) without ever holding more than `chunk` bytes of one line."""
    while True:
        line = f.readline(chunk)
        if not line:
            return
        if line.endswith(b"\n") or len(line) < chunk:
            yield line, False
            continue
        while True:  # an overlong line: keep its head, drain the rest
            more = f.readline(chunk)
            if not more or more.endswith(b"\n"):
                break
        yield line, True


def _is_git(name: str) -> bool:
    return name.lower() == ".git"


def _linear_regex(pattern: str) -> Callable[[str], object]:
    """An agent's regex, compiled by RE2: matching takes time linear in the text, whatever the pattern
    (Python's re backtracks exponentially on `(a+)+$` and holds the GIL meanwhile, freezing every
    agent and the screen). RE2 has no backreferences or lookaround: those get a clear error."""
    import re2

    options = re2.Options()
    options.log_errors = False  # RE2 would write parse errors to the terminal (the screen)
    options.max_mem = 64 << 20
    try:
        return re2.compile(pattern, options).search
    except re2.error as exc:
        why = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ToolError(f"search_text: regex {pattern!r} is not accepted: {why}. The search uses RE2 (linear "
                        "time): no backreferences (\\1) or lookaround ((?=, (?<=); search for a simpler pattern") from None


class WorktreeTools:
    """The tools of one agent on one task, every one of them confined to `worktree`."""

    SPECS: dict[str, ToolSpec] = SPECS
    READ_ONLY = frozenset({"read_file", "list_files", "search_text"})
    LIST_CAP = 1000  # files shown by list_files
    SEARCH_CAP = 200  # matches shown by search_text
    SEARCH_LINE_CHARS = 400  # a matched line longer than this is cut
    SEARCH_TIME_S = 10.0  # a search that reads this long stops and says so (a huge tree, not a pattern)

    def __init__(
        self,
        worktree: Path,
        sandbox: Sandbox,
        *,
        command_timeout_s: float = 120,
        output_cap_bytes: int = 64_000,
        max_read_bytes: int = 200_000,
        scratch: Path | None = None,
        worktree_writable: bool = True,
        nice: int = 0,
    ) -> None:
        self.root = Path(worktree).resolve(strict=True)
        # a reviewer's or breaker's commands see the worktree read-only: they judge, never change
        self.worktree_writable = worktree_writable
        if not self.root.is_dir():
            raise NotADirectoryError(f"worktree {self.root} is not a directory")
        self.sandbox = sandbox
        self.command_timeout_s = command_timeout_s
        self.output_cap_bytes = output_cap_bytes
        self.nice = nice  # the agent's commands yield the CPU to the gates and the cockpit
        self.max_read_bytes = max_read_bytes
        self.scratch = Path(scratch).resolve() if scratch is not None else None

    @classmethod
    def api_tools(cls, names: Iterable[str] | None = None) -> list[dict]:
        """The Anthropic tool dicts for `names` (all tools by default), in a stable order."""
        wanted = set(cls.SPECS) if names is None else set(names)
        unknown = wanted - set(cls.SPECS)
        if unknown:
            raise KeyError(f"unknown tools: {sorted(unknown)}")
        return [spec.to_api() for name, spec in cls.SPECS.items() if name in wanted]

    # ---------------------------------------------------------------- dispatch

    async def call(self, name: str, tool_input: dict) -> str:
        """Run tool `name` on `tool_input` after checking it against the tool's schema."""
        spec = self.SPECS.get(name)
        if spec is None:
            raise ToolError(f"unknown tool {name!r}; the tools are: {', '.join(self.SPECS)}")
        args = self._validate(spec, tool_input)
        return await getattr(self, f"_tool_{name}")(**args)

    @staticmethod
    def _validate(spec: ToolSpec, tool_input: Any) -> dict:
        if not isinstance(tool_input, dict):
            raise ToolError(f"{spec.name}: input must be an object, got {type(tool_input).__name__}")
        props = spec.input_schema["properties"]
        for key in spec.input_schema["required"]:
            if key not in tool_input:
                raise ToolError(f"{spec.name}: missing required input {key!r}")
        for key, value in tool_input.items():
            if key not in props:
                raise ToolError(f"{spec.name}: unknown input {key!r}; the inputs are: {', '.join(props)}")
            label, pytype = _JSON_TYPES[props[key]["type"]]
            ok = isinstance(value, pytype) and not (pytype is int and isinstance(value, bool))
            if not ok:
                raise ToolError(f"{spec.name}: input {key!r} must be {label}, got {type(value).__name__}")
            minimum = props[key].get("minimum")
            if minimum is not None and value < minimum:
                raise ToolError(f"{spec.name}: input {key!r} must be at least {minimum}, got {value}")
        return dict(tool_input)

    # ------------------------------------------------------------- path checks

    def _inside(self, p: Path) -> bool:
        return p == self.root or p.is_relative_to(self.root)

    def _check(self, path: str, *, write: bool) -> tuple[str, ...]:
        """The worktree-relative, symlink-free parts `path` names, or ToolError saying why not.

        Blocking (lstat/realpath): call it from a worker thread.
        """
        if "\x00" in path:
            raise ToolError(f"path {path!r} contains a NUL byte")
        raw = PurePosixPath(path)
        if raw.is_absolute() or os.path.isabs(path):
            raise ToolError(f"path {path!r} is absolute; use a path relative to the worktree")
        depth = 0
        for part in raw.parts:
            depth += -1 if part == ".." else 1
            if depth < 0:
                raise ToolError(f"path {path!r} leaves the worktree")
        verb = "writable" if write else "readable"
        if any(_is_git(part) for part in raw.parts):
            raise ToolError(f"path {path!r}: '.git' is not {verb} by agents")
        # Every existing component: a symlink anywhere is refused for a write, and for a
        # read it must not lead outside even if a later '..' would come back in.
        current = self.root
        for i, part in enumerate(raw.parts):
            current = current / part
            if not current.is_symlink():
                continue
            shown = "/".join(raw.parts[: i + 1])
            if write:
                if shown == str(raw):
                    raise ToolError(f"path {path!r} is a symlink; agents may not write through symlinks")
                raise ToolError(f"path {path!r} goes through the symlink {shown!r}; agents may not write through symlinks")
            try:
                target = current.resolve(strict=False)
            except (RuntimeError, OSError):
                raise ToolError(f"path {path!r} is a symlink loop") from None
            if not self._inside(target):
                raise ToolError(f"path {path!r} leaves the worktree through the symlink {shown!r}")
        try:
            resolved = (self.root / raw).resolve(strict=False)
        except (RuntimeError, OSError):
            raise ToolError(f"path {path!r} is a symlink loop") from None
        if not self._inside(resolved):
            raise ToolError(f"path {path!r} leaves the worktree")
        parts = resolved.relative_to(self.root).parts
        if any(_is_git(part) for part in parts):
            raise ToolError(f"path {path!r}: '.git' is not {verb} by agents")
        return parts

    @staticmethod
    def _shown(parts: Sequence[str]) -> str:
        return "/".join(parts) or "."

    def _open_error(self, path: str, exc: OSError, action: str) -> ToolError:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            return ToolError(f"path {path!r} goes through a symlink; refused to follow it")
        if exc.errno == errno.ENOENT:
            return ToolError(f"path {path!r} does not exist")
        if exc.errno == errno.ENOTDIR:
            return ToolError(f"path {path!r}: a parent of it is not a directory")
        if exc.errno == errno.ENXIO:
            return ToolError(f"path {path!r} is not a regular file")
        if exc.errno == errno.EISDIR:
            return ToolError(f"path {path!r} is a directory")
        return ToolError(f"cannot {action} {path!r}: {exc.strerror or exc}")

    def _open_regular(self, path: str, parts: Sequence[str], flags: int, action: str, **kw: Any) -> int:
        """open_nofollow + refuse anything but a regular file (a FIFO would hang the thread)."""
        try:
            fd = open_nofollow(self.root, parts, flags | _NONBLOCK, **kw)
        except OSError as exc:
            raise self._open_error(path, exc, action) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            if stat.S_ISDIR(st.st_mode):
                hint = "; use list_files" if action == "read" else ""
                raise ToolError(f"path {path!r} is a directory{hint}")
            raise ToolError(f"path {path!r} is not a regular file")
        return fd

    # ------------------------------------------------------------------- tools

    async def _tool_read_file(self, path: str, offset_line: int = 1, limit_lines: int | None = None) -> str:
        return await asyncio.to_thread(self._read_file, path, offset_line, limit_lines)

    def _read_file(self, path: str, offset_line: int, limit_lines: int | None) -> str:
        parts = self._check(path, write=False)
        fd = self._open_regular(path, parts, os.O_RDONLY, "read")
        cap = self.max_read_bytes
        with os.fdopen(fd, "rb") as f:
            head = f.read(_BINARY_SNIFF)
            if b"\x00" in head:
                size = os.fstat(f.fileno()).st_size
                raise ToolError(f"path {path!r} is a binary file ({size} bytes); read_file shows text only")
            if not head:
                return "(empty file)"
            f.seek(0)
            out: list[str] = []
            used = 0
            last = 0
            stop = offset_line + limit_lines if limit_lines is not None else None
            for n, (raw, cut) in enumerate(_iter_lines(f, cap + 1), start=1):
                last = n
                if n < offset_line:
                    continue
                if stop is not None and n >= stop:
                    out.append(f"(more lines follow; continue with offset_line={n})")
                    break
                text = raw.decode("utf-8", errors="replace").rstrip("\n")
                line = f"{n:6}\t{text}" + (" … (line cut)" if cut else "") + "\n"
                size = len(line.encode("utf-8"))
                if used + size > cap:
                    if used == 0:  # one giant line: show its head
                        out.append(line.encode("utf-8")[:cap].decode("utf-8", errors="ignore") + "\n")
                        n += 1
                    out.append(
                        f"(output capped at {cap} bytes; showing lines {offset_line}-{n - 1}; "
                        f"continue with offset_line={n})"
                    )
                    break
                out.append(line)
                used += size
            if not out:
                return f"(offset_line {offset_line} is past the end: the file has {last} lines)"
            return "".join(out).rstrip("\n")

    async def _tool_write_file(self, path: str, content: str) -> str:
        return await asyncio.to_thread(self._write_file, path, content)

    def _write_file(self, path: str, content: str) -> str:
        parts = self._check(path, write=True)
        if not parts:
            raise ToolError(f"path {path!r} is the worktree itself, not a file")
        data = content.encode("utf-8")
        fd = self._open_regular(path, parts, os.O_WRONLY | os.O_CREAT, "write", mode=0o666, make_parents=True)
        try:
            os.ftruncate(fd, 0)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        return f"wrote {len(data)} bytes to {self._shown(parts)}"

    async def _tool_edit_file(self, path: str, old: str, new: str, replace_all: bool = False) -> str:
        return await asyncio.to_thread(self._edit_file, path, old, new, replace_all)

    def _edit_file(self, path: str, old: str, new: str, replace_all: bool) -> str:
        if old == "":
            raise ToolError("edit_file: 'old' must not be empty; use write_file to create a file")
        if old == new:
            raise ToolError("edit_file: 'old' and 'new' are identical; nothing to change")
        parts = self._check(path, write=True)
        shown = self._shown(parts)
        fd = self._open_regular(path, parts, os.O_RDWR, "edit")
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            try:
                text = b"".join(chunks).decode("utf-8")
            except UnicodeDecodeError:
                raise ToolError(f"path {path!r} is not UTF-8 text; use write_file to replace it") from None
            count = text.count(old)
            if count == 0:
                raise ToolError(f"'old' was not found in {shown}; read_file it and copy the text exactly")
            if count > 1 and not replace_all:
                raise ToolError(
                    f"'old' occurs {count} times in {shown}; include more context to make it unique, "
                    "or pass replace_all=true"
                )
            data = text.replace(old, new).encode("utf-8")
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        return f"replaced {count} occurrence{'s' if count != 1 else ''} in {shown}"

    def _walk(self, path: str) -> list[tuple[str, bool]]:
        """(worktree-relative path, is_symlink) of every file under `path`, after checking it.

        '.git' is pruned and symlinks are listed but never followed. The walk runs on
        descriptors (open_nofollow + os.fwalk), so a directory swapped for a symlink after
        the check cannot take it outside the worktree.
        """
        parts = self._check(path, write=False)
        try:
            if parts:
                fd = open_nofollow(self.root, parts, os.O_RDONLY | _NONBLOCK)
            else:
                fd = os.open(self.root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
        except OSError as exc:
            raise self._open_error(path, exc, "read") from None
        prefix = "/".join(parts)

        def rel(sub: str, name: str) -> str:
            return "/".join(p for p in (prefix, sub, name) if p and p != ".")

        found: list[tuple[str, bool]] = []
        try:
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                return [(prefix, False)]
            for dirpath, dirnames, filenames, dir_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
                sub = os.path.normpath(dirpath)
                kept = []
                for name in dirnames:
                    if _is_git(name):
                        continue
                    try:
                        is_link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
                    except FileNotFoundError:
                        continue  # removed while we walked
                    if is_link:
                        found.append((rel(sub, name), True))
                    else:
                        kept.append(name)
                dirnames[:] = sorted(kept)
                for name in filenames:
                    if _is_git(name):
                        continue
                    try:
                        is_link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
                    except FileNotFoundError:
                        continue  # removed while we walked
                    found.append((rel(sub, name), is_link))
        finally:
            os.close(fd)
        return found

    async def _tool_list_files(self, path: str = ".", pattern: str | None = None) -> str:
        return await asyncio.to_thread(self._list_files, path, pattern)

    def _list_files(self, path: str, pattern: str | None) -> str:
        found = []
        for rel, _link in self._walk(path):
            if pattern:
                subject = rel if "/" in pattern else rel.rsplit("/", 1)[-1]
                if not fnmatch.fnmatchcase(subject, pattern):
                    continue
            found.append(rel)
        if not found:
            return "(no files match)" if pattern else "(no files)"
        found.sort()
        shown = found[: self.LIST_CAP]
        if len(found) > len(shown):
            shown.append(f"({len(found) - len(shown)} more files not shown; narrow with path or pattern)")
        return "\n".join(shown)

    async def _tool_search_text(self, pattern: str, path: str = ".", regex: bool = False) -> str:
        return await asyncio.to_thread(self._search_text, pattern, path, regex)

    def _search_text(self, pattern: str, path: str, regex: bool) -> str:
        if pattern == "":
            raise ToolError("search_text: 'pattern' must not be empty")
        if regex:
            matcher = _linear_regex(pattern)
        else:
            matcher = lambda text: pattern in text  # noqa: E731
        out: list[str] = []
        used = 0
        capped = timed_out = False
        deadline = time.monotonic() + self.SEARCH_TIME_S
        for rel, is_link in sorted(self._walk(path)):
            if is_link:
                continue
            try:
                fd = open_nofollow(self.root, rel.split("/"), os.O_RDONLY | _NONBLOCK)
            except OSError:
                continue  # vanished or swapped for a symlink since the walk: skip it
            with os.fdopen(fd, "rb") as f:
                if not stat.S_ISREG(os.fstat(fd).st_mode) or b"\x00" in f.read(_BINARY_SNIFF):
                    continue
                f.seek(0)
                for n, (raw, _cut) in enumerate(_iter_lines(f, 1 << 20), start=1):
                    if n % 256 == 0 and time.monotonic() > deadline:
                        timed_out = True
                        break
                    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                    if not matcher(text):
                        continue
                    if len(text) > self.SEARCH_LINE_CHARS:
                        text = text[: self.SEARCH_LINE_CHARS] + " …"
                    line = f"{rel}:{n}: {text}"
                    size = len(line.encode("utf-8")) + 1
                    if len(out) >= self.SEARCH_CAP or used + size > self.output_cap_bytes:
                        capped = True
                        break
                    out.append(line)
                    used += size
            if capped or timed_out or time.monotonic() > deadline:
                timed_out = timed_out or not capped
                break
        if timed_out:
            out.append(f"(stopped after {self.SEARCH_TIME_S:g} s of reading, at {rel}; narrow the path)")
        if not out:
            return "no matches"
        if capped:
            out.append(f"(stopped after {len(out)} matches; narrow the pattern or path)")
        return "\n".join(out)

    async def _tool_run_command(self, command: str) -> str:
        from cockpit.host.sandbox import SandboxUnavailable

        if not command.strip():
            raise ToolError("run_command: 'command' is empty")
        writable = ([self.root] if self.worktree_writable else []) + (
            [self.scratch] if self.scratch is not None else [])
        try:
            result = await self.sandbox.run(
                command,
                cwd=self.root,
                writable=writable,
                readable=[] if self.worktree_writable else [self.root],
                timeout_s=self.command_timeout_s,
                output_cap_bytes=self.output_cap_bytes,
                nice=self.nice,
            )
        except SandboxUnavailable as exc:
            raise ToolError(f"run_command: no sandbox, so the command was not run: {exc}") from None
        code = "none" if result.exit_code is None else str(result.exit_code)
        text = f"exit code {code}\n{result.output}"
        notes = []
        if result.timed_out:
            notes.append(f"(timed out after {self.command_timeout_s:g}s)")
        if result.truncated:
            notes.append("(output truncated)")
        if notes:
            text = text.rstrip("\n") + "\n" + "\n".join(notes)
        return text
