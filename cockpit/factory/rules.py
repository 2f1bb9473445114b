"""The rules the agents read before they touch anything: markdown files with optional front matter.

Two sources, assembled per (role, product) in one stable order and put first in the system prompt:
- the factory's own `rules/` directory (any `*.md`, recursively);
- a product's `.cockpit/rules/` as committed on its MAIN branch (`git show main:...`), never
  from an agent's worktree: an agent cannot rewrite the rules it is judged by.

Front matter (optional) is a small YAML subset, parsed by hand here rather than with a YAML
library: three keys, lists and integers are all it needs, full YAML's surprises (`no` -> False,
`1_0` -> 10, anchors) would be bugs in a rules file, and the errors must name the exact line:

    ---
    roles: [builder, reviewer]     # or a block list of "- builder" lines; absent: every role
    products: [shop]               # absent: every product
    order: 10                      # lower comes first; absent: 100
    title: Money                   # optional, for people
    ---

A file that does not parse is reported (file, line, message) and the last good version of
that file stays in force: a typo never silently drops a rule, and nothing crashes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..agents.roles import ROLE_TOOLS
from ..domain.events import Kind

log = logging.getLogger(__name__)

PRODUCT_RULES_DIR = ".cockpit/rules"
DEFAULT_ORDER = 100
KNOWN_KEYS = ("roles", "products", "order", "title")
MAX_RULE_BYTES = 256 * 1024


Emit = Callable[[str, dict, "str | None"], None]
"""(event kind, data, product or None): how a RuleBook reports a change or a broken file."""


# --- one file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleError:
    file: str  # where a person fixes it
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"

    def as_data(self) -> dict:
        return {"file": self.file, "line": self.line, "message": self.message}


class RuleParseError(Exception):
    def __init__(self, error: RuleError):
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class RuleFile:
    name: str  # logical name, shown to agents and in events: "rules/10-builder.md", "shop:.cockpit/rules/x.md"
    product: str | None  # the product whose repository holds it; None: the factory's rules
    roles: tuple[str, ...] | None
    products: tuple[str, ...] | None
    order: int
    body: str
    digest: str  # of the raw bytes
    title: str = ""

    def applies(self, role: str, product: str | None) -> bool:
        if self.product is not None and self.product != product:
            return False
        if self.roles is not None and role not in self.roles:
            return False
        if self.products is not None and product not in self.products:
            return False
        return True

    @property
    def sort_key(self) -> tuple[int, int, str]:
        return (self.order, 0 if self.product is None else 1, self.name)


def known_roles() -> frozenset[str]:
    return frozenset(ROLE_TOOLS)


_KEY_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)[ \t]*:(.*)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_INT = re.compile(r"^[+-]?[0-9]+$")


def _strip_comment(value: str) -> str:
    """Drop a trailing ` # comment` outside quotes."""
    quote = None
    for i, ch in enumerate(value):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or value[i - 1] in " \t"):
            return value[:i].rstrip()
    return value.strip()


def _scalar(raw: str, where: Callable[[str], RuleParseError]) -> str:
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        q = raw[0]
        if len(raw) < 2 or raw[-1] != q:
            raise where(f"unterminated quoted string {raw!r}")
        return raw[1:-1]
    if raw[:1] in "[]{}&*!|>%@`":
        raise where(f"{raw!r}: only plain words, quoted strings, whole numbers and [a, b] lists are allowed here")
    return raw


def _inline_list(raw: str, where: Callable[[str], RuleParseError]) -> list[str]:
    if not raw.endswith("]"):
        raise where(f"list {raw!r} is not closed: end it with ']'")
    inner = raw[1:-1].strip()
    if not inner:
        return []
    items = []
    for part in inner.split(","):
        if not part.strip():
            raise where(f"empty item in list {raw!r}")
        items.append(_scalar(part, where))
    return items


def parse_front_matter(lines: list[str], file: str, first_line: int) -> dict[str, tuple[object, int]]:
    """Parse front-matter lines (without the --- fences) into {key: (value, line)}; RuleParseError if broken."""
    out: dict[str, tuple[object, int]] = {}
    open_list: str | None = None
    for offset, line in enumerate(lines):
        n = first_line + offset

        def where(msg: str, n: int = n) -> RuleParseError:
            return RuleParseError(RuleError(file, n, msg))

        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "\t" in line[: len(line) - len(line.lstrip())]:
            raise where("indentation with a tab: use spaces")
        if stripped.startswith("-"):
            if open_list is None:
                raise where("list item '- ...' outside a list: put it under a key that ends with ':'")
            if stripped != "-" and not stripped.startswith("- "):
                raise where(f"write a list item as '- value', not {stripped!r}")
            item = _strip_comment(stripped[1:])
            if not item:
                raise where("empty list item")
            value, _ = out[open_list]
            assert isinstance(value, list)
            value.append((_scalar(item, where), n))
            continue
        if line[:1] in " ":
            raise where(f"unexpected indentation: {stripped!r} (keys start at the beginning of the line)")
        m = _KEY_LINE.match(line.rstrip())
        if not m:
            raise where(f"expected 'key: value', got {stripped!r}")
        key, raw = m.group(1), _strip_comment(m.group(2))
        if key not in KNOWN_KEYS:
            raise where(f"unknown key {key!r} (known: {', '.join(KNOWN_KEYS)})")
        if key in out:
            raise where(f"key {key!r} given twice (first on line {out[key][1]})")
        open_list = None
        if raw == "":
            out[key] = ([], n)  # a block list follows (or an empty value, judged below)
            open_list = key
        elif raw.startswith("["):
            out[key] = ([(v, n) for v in _inline_list(raw, where)], n)
        else:
            out[key] = (_scalar(raw, where), n)
    return out


def parse_rule(name: str, raw: bytes, *, file: str | None = None, product: str | None = None,
               roles: Iterable[str] | None = None, products: Iterable[str] | None = None) -> RuleFile:
    """One rule file from its bytes; RuleParseError naming `file` and the line if it is broken.

    `roles`/`products`: the names that exist; a front matter naming another is an error
    (a typo such as `roles: [bulder]` would otherwise make a rule silently apply to nobody)."""
    file = file or name
    digest = hashlib.sha256(raw).hexdigest()
    if len(raw) > MAX_RULE_BYTES:
        raise RuleParseError(RuleError(file, 1, f"{len(raw)} bytes: a rule file must stay under {MAX_RULE_BYTES}"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise RuleParseError(RuleError(file, line, f"not UTF-8 text (byte {e.start})")) from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    lines = text.split("\n")
    meta: dict[str, tuple[object, int]] = {}
    body_lines = lines
    if lines and lines[0].strip() == "---":
        close = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
        if close is None:
            raise RuleParseError(RuleError(file, 1, "front matter opened with '---' is never closed: add a '---' line "
                                                    "after it"))
        meta = parse_front_matter(lines[1:close], file, 2)
        body_lines = lines[close + 1:]

    known_roles_ = frozenset(roles) if roles is not None else known_roles()
    known_products = frozenset(products) if products is not None else None

    def names_of(key: str, known: frozenset[str] | None, what: str) -> tuple[str, ...] | None:
        if key not in meta:
            return None
        value, line = meta[key]
        items = value if isinstance(value, list) else [(value, line)]
        if not items:
            raise RuleParseError(RuleError(file, line, f"'{key}' is empty, so this rule would apply to no {what}: "
                                                       f"remove the key to apply it to every {what}"))
        out = []
        for item, item_line in items:
            if not _NAME.match(str(item)):
                raise RuleParseError(RuleError(file, item_line, f"{key}: {item!r} is not a {what} name"))
            if known is not None and item not in known:
                raise RuleParseError(RuleError(file, item_line, f"{key}: unknown {what} {item!r} "
                                                                f"(known: {', '.join(sorted(known))})"))
            out.append(str(item))
        return tuple(out)

    rule_roles = names_of("roles", known_roles_, "role")
    rule_products = names_of("products", known_products, "product")
    order = DEFAULT_ORDER
    if "order" in meta:
        value, line = meta["order"]
        if isinstance(value, list) or not _INT.match(str(value)):
            raise RuleParseError(RuleError(file, line, f"order must be a whole number, not {value!r}"))
        order = int(str(value))
    title = ""
    if "title" in meta:
        value, line = meta["title"]
        if isinstance(value, list):
            raise RuleParseError(RuleError(file, line, "title must be a single line of text"))
        title = str(value)
    return RuleFile(name=name, product=product, roles=rule_roles, products=rule_products, order=order,
                    body="\n".join(body_lines).strip(), digest=digest, title=title)


# --- the effective rules -------------------------------------------------------------------


@dataclass(frozen=True)
class Rules:
    """The rules one agent is given: the text, its content hash, and the files it came from."""

    text: str
    hash: str
    files: tuple[str, ...]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def assemble(files: Iterable[RuleFile], role: str, product: str | None) -> Rules:
    """The rules that apply to `role` on `product`, in (order, factory before product, name) order."""
    chosen = sorted((f for f in files if f.applies(role, product) and f.body), key=lambda f: f.sort_key)
    parts = [f"<!-- {f.name} -->\n{f.body}" for f in chosen]
    text = "\n\n".join(parts)
    return Rules(text=text, hash=text_hash(text), files=tuple(f.name for f in chosen))


def _set_hash(files: Iterable[RuleFile]) -> str:
    return text_hash("\n".join(f"{f.name} {f.digest}" for f in sorted(files, key=lambda f: f.name)))


@dataclass
class _Scope:
    """The files in force for one source (the factory dir, or one product's main)."""

    product: str | None
    good: dict[str, RuleFile] = field(default_factory=dict)
    seen: dict[str, str] = field(default_factory=dict)  # name -> digest of the bytes last looked at
    errors: dict[str, RuleError] = field(default_factory=dict)
    loaded: bool = False

    @property
    def hash(self) -> str:
        return _set_hash(self.good.values())


# --- reading a product's rules from its main branch ----------------------------------------


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    from ..host import safe_git

    return safe_git.run_sync(*args, cwd=repo, stdin=stdin, timeout=30)


class ProductRulesUnreadable(Exception):
    """The repository or its main branch could not be read: keep what is in force."""


def read_product_tree(repo: Path, branch: str, known_tree: str | None) -> tuple[str | None, dict[str, bytes] | None]:
    """(tree id of `branch:.cockpit/rules`, {relative path: bytes}) from git objects, never a checkout.

    Returns (same tree, None) when the tree is `known_tree` (nothing to read), (None, {}) when
    main has no rules directory. Raises ProductRulesUnreadable if the repo or branch is missing."""
    if not Path(repo).is_dir():
        raise ProductRulesUnreadable(f"{repo}: no such repository")
    ref = f"refs/heads/{branch}"
    p = _git(repo, "rev-parse", "-q", "--verify", f"{ref}:{PRODUCT_RULES_DIR}")
    if p.returncode != 0:
        if _git(repo, "rev-parse", "-q", "--verify", f"{ref}^{{commit}}").returncode != 0:
            raise ProductRulesUnreadable(f"{repo}: no branch {branch!r}")
        return None, {}
    tree = p.stdout.decode().strip()
    if tree == known_tree:
        return tree, None
    ls = _git(repo, "ls-tree", "-r", "-z", tree)
    if ls.returncode != 0:
        raise ProductRulesUnreadable(f"{repo}: git ls-tree failed: {ls.stderr.decode(errors='replace').strip()}")
    wanted: list[tuple[str, str]] = []
    for entry in ls.stdout.decode("utf-8", errors="replace").split("\0"):
        if not entry:
            continue
        meta, _, path = entry.partition("\t")
        mode, kind, sha = meta.split()
        # regular files only: a symlink in the tree could name anything
        if kind == "blob" and mode in ("100644", "100755") and path.endswith(".md"):
            wanted.append((path, sha))
    files: dict[str, bytes] = {}
    if wanted:
        batch = _git(repo, "cat-file", "--batch", stdin="".join(f"{sha}\n" for _, sha in wanted).encode())
        if batch.returncode != 0:
            raise ProductRulesUnreadable(f"{repo}: git cat-file failed: {batch.stderr.decode(errors='replace')}")
        out, pos = batch.stdout, 0
        for path, sha in wanted:
            nl = out.index(b"\n", pos)
            header = out[pos:nl].split()
            if len(header) != 3 or header[0].decode() != sha or header[1] != b"blob":
                raise ProductRulesUnreadable(f"{repo}: unexpected git cat-file output for {path}: {header!r}")
            size = int(header[2])
            files[path] = out[nl + 1: nl + 1 + size]
            pos = nl + 1 + size + 1
    return tree, files


# --- the book ------------------------------------------------------------------------------


class RuleBook:
    """Every rule file in force, kept current: the factory's dir is re-read on `refresh()` (cheap:
    a handful of small files), a product's rules whenever its main's rules tree changes.

    `emit` is called with `rules.changed` {old_hash, new_hash, files} when the set in force
    changes, and `rules.error` {file, line, message} once per broken version of a file."""

    def __init__(self, rules_dir: Path, *, products: Mapping[str, tuple[Path, str]] | None = None,
                 emit: Emit | None = None, roles: Iterable[str] | None = None):
        self.rules_dir = Path(rules_dir)
        self.products = dict(products or {})
        self.emit = emit
        self.roles = frozenset(roles) if roles is not None else known_roles()
        self._factory = _Scope(None)
        self._product: dict[str, _Scope] = {}
        self._trees: dict[str, str | None] = {}
        self._unreadable: dict[str, str] = {}

    # what is in force

    @property
    def hash(self) -> str:
        """The content hash of the factory's rules in force (all files, every role)."""
        return self._factory.hash

    def files(self) -> list[RuleFile]:
        out = list(self._factory.good.values())
        for scope in self._product.values():
            out.extend(scope.good.values())
        return out

    def errors(self) -> list[RuleError]:
        out = list(self._factory.errors.values())
        for scope in self._product.values():
            out.extend(scope.errors.values())
        return sorted(out, key=lambda e: (e.file, e.line))

    def effective(self, role: str, product: str | None) -> Rules:
        """The rules for `role` on `product` from what is in force now (no I/O)."""
        if not self._factory.loaded:
            self.refresh()
        files = list(self._factory.good.values())
        if product is not None and product in self._product:
            files.extend(self._product[product].good.values())
        return assemble(files, role, product)

    async def current(self, role: str, product: str | None) -> Rules:
        """Re-read what may have changed (the factory dir; the product's main), then `effective`."""
        self.refresh()
        if product is not None:
            await self.refresh_product(product)
        return self.effective(role, product)

    # reading

    def _read_dir(self) -> dict[str, tuple[bytes, str]]:
        found: dict[str, tuple[bytes, str]] = {}
        if not self.rules_dir.is_dir():
            return found
        for f in sorted(self.rules_dir.rglob("*.md")):
            if not f.is_file() or any(part.startswith(".") for part in f.relative_to(self.rules_dir).parts):
                continue  # editors' swap and temp files
            try:
                raw = f.read_bytes()
            except OSError:
                continue  # vanished between listing and reading: the next refresh sees it
            found[f"rules/{f.relative_to(self.rules_dir).as_posix()}"] = (raw, str(f))
        return found

    def refresh(self) -> bool:
        """Re-read the factory's rules dir; True if the rules in force changed."""
        return self._update(self._factory, self._read_dir(), products=set(self.products) or None)

    async def refresh_product(self, product: str) -> bool:
        """Re-read `product`'s rules from its main branch if its rules tree moved; True if they changed."""
        if product not in self.products:
            return False
        repo, branch = self.products[product]
        try:
            tree, raw = await asyncio.to_thread(read_product_tree, repo, branch, self._trees.get(product, "?"))
        except (ProductRulesUnreadable, OSError, subprocess.SubprocessError, ValueError) as e:
            if self._unreadable.get(product) != str(e):  # once per problem, not once per model call
                self._unreadable[product] = str(e)
                log.warning("rules of %s not re-read (the ones in force stay): %s", product, e)
            return False
        self._unreadable.pop(product, None)
        return self.apply_product_tree(product, tree, raw)

    def refresh_product_sync(self, product: str) -> bool:
        repo, branch = self.products[product]
        tree, raw = read_product_tree(repo, branch, self._trees.get(product, "?"))
        return self.apply_product_tree(product, tree, raw)

    def apply_product_tree(self, product: str, tree: str | None, raw: dict[str, bytes] | None) -> bool:
        if raw is None:
            return False  # the same tree as last time
        self._trees[product] = tree
        repo, branch = self.products.get(product, (Path(product), "main"))
        scope = self._product.setdefault(product, _Scope(product))
        found = {f"{product}:{PRODUCT_RULES_DIR}/{rel}": (data, f"{repo}/{PRODUCT_RULES_DIR}/{rel} (on {branch})")
                 for rel, data in raw.items()}
        return self._update(scope, found, products=None)

    def _update(self, scope: _Scope, found: dict[str, tuple[bytes, str]], *, products: set[str] | None) -> bool:
        old_hash, first = scope.hash, not scope.loaded
        changed: list[str] = []
        for name, (raw, file) in found.items():
            digest = hashlib.sha256(raw).hexdigest()
            if scope.seen.get(name) == digest:
                continue
            scope.seen[name] = digest
            try:
                rf = parse_rule(name, raw, file=file, product=scope.product, roles=self.roles, products=products)
            except RuleParseError as e:
                scope.errors[name] = e.error
                kept = "the last good version stays in force" if name in scope.good else "not in force"
                log.warning("rule file %s is broken (%s): %s", e.error.file, kept, e.error)
                self._emit(Kind.RULES_ERROR, {**e.error.as_data(), "name": name, "in_force": name in scope.good},
                           scope.product)
                continue
            scope.errors.pop(name, None)
            if scope.good.get(name) != rf:
                scope.good[name] = rf
                changed.append(name)
        for name in [n for n in scope.seen if n not in found]:
            scope.seen.pop(name)
            scope.errors.pop(name, None)
            if scope.good.pop(name, None) is not None:
                changed.append(name)
        scope.loaded = True
        new_hash = scope.hash
        if new_hash == old_hash:
            return False
        if not first:
            self._emit(Kind.RULES_CHANGED, {"old_hash": old_hash, "new_hash": new_hash, "files": sorted(changed)},
                       scope.product)
        return True

    def _emit(self, kind: str, data: dict, product: str | None) -> None:
        if self.emit is not None:
            try:
                self.emit(kind, data, product)
            except Exception:  # reporting must never break reading the rules
                log.exception("could not report %s", kind)


def load_rules(directory: Path, role: str | None = None, product: str | None = None) -> Rules:
    """The factory's rules from `directory` alone (no product rules); every role's when `role` is None."""
    book = RuleBook(directory)
    book.refresh()
    if role is None:
        return assemble([replace(f, roles=None, products=None) for f in book.files()], "", product)
    return book.effective(role, product)


def check_rules(rules_dir: Path, products: Mapping[str, tuple[Path, str]] | None = None) -> tuple[list[RuleFile],
                                                                                                  list[RuleError]]:
    """Validate every rule file: the factory's and each product's main; (files that parse, errors)."""
    book = RuleBook(rules_dir, products=products)
    book.refresh()
    errors: list[RuleError] = []
    for name, (repo, branch) in sorted((products or {}).items()):
        try:
            book.refresh_product_sync(name)
        except ProductRulesUnreadable as e:
            errors.append(RuleError(f"{repo}", 0, f"product {name}: cannot read its rules from {branch}: {e}"))
    return sorted(book.files(), key=lambda f: f.sort_key), sorted(book.errors() + errors, key=lambda e: (e.file, e.line))
