"""Rules: front matter, assembly order and filtering, product rules from main, broken files, the watcher, the CLI."""

import asyncio

import pytest

from cockpit.cli import main
from cockpit.domain.events import Kind
from cockpit.factory.rules import (
    DEFAULT_ORDER,
    RuleBook,
    RuleParseError,
    assemble,
    parse_rule,
    text_hash,
)
from cockpit.factory.rules_watch import RulesWatcher
from factory_kit import write_plain_factory
from gitrepo import commit_files, make_repo, run_git

GLOBAL = "---\norder: 0\n---\n# Everyone\nRead before you write.\n"
BUILDER = "---\nroles: [builder]\norder: 10\n---\n# Builder\nDone means tested.\n"
REVIEWER = "---\nroles:\n  - reviewer\n  - breaker   # a block list, with a comment\norder: 20\n---\n# Review\nJudge it.\n"


def write_rules(d, files):
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, kind, data, product):
        self.events.append((kind, data, product))

    def kinds(self):
        return [k for k, _, _ in self.events]


# --- parsing ---------------------------------------------------------------------------------


def test_front_matter_lists_ints_strings_and_defaults():
    rf = parse_rule("rules/r.md", REVIEWER.encode())
    assert rf.roles == ("reviewer", "breaker") and rf.order == 20 and rf.products is None
    assert rf.body == "# Review\nJudge it."
    plain = parse_rule("rules/p.md", b"# No front matter\nJust text.\n")
    assert plain.roles is None and plain.order == DEFAULT_ORDER and plain.body.startswith("# No front matter")
    quoted = parse_rule("rules/q.md", b'---\ntitle: "Money: never a float"\nproducts: [shop, "ledger"]\n---\nx\n')
    assert quoted.title == "Money: never a float" and quoted.products == ("shop", "ledger")


@pytest.mark.parametrize("text, line, message", [
    ("---\norder: 1\nrole: [builder]\n---\nx", 3, "unknown key 'role'"),
    ("---\norder: ten\n---\nx", 2, "order must be a whole number"),
    ("---\nroles: [builder\n---\nx", 2, "is not closed"),
    ("---\nroles:\n  - builder\n  - bulder\n---\nx", 4, "unknown role 'bulder'"),
    ("---\nroles: []\n---\nx", 2, "would apply to no role"),
    ("---\n- builder\n---\nx", 2, "outside a list"),
    ("---\norder: 1\norder: 2\n---\nx", 3, "given twice"),
    ("---\norder: 1\n\nx\n", 1, "never closed"),
    ("---\ntitle: 'half\n---\nx", 2, "unterminated"),
])
def test_broken_front_matter_names_the_line(text, line, message):
    with pytest.raises(RuleParseError) as e:
        parse_rule("rules/bad.md", text.encode(), file="/f/rules/bad.md")
    assert e.value.error.file == "/f/rules/bad.md" and e.value.error.line == line
    assert message in e.value.error.message
    assert str(e.value.error).startswith(f"/f/rules/bad.md:{line}: ")


def test_not_utf8_names_the_line():
    with pytest.raises(RuleParseError) as e:
        parse_rule("rules/b.md", b"# ok\nstill ok\n\xff\xfe broken\n")
    assert e.value.error.line == 3


def test_unknown_product_is_an_error_when_the_products_are_known():
    with pytest.raises(RuleParseError) as e:
        parse_rule("rules/x.md", b"---\nproducts: [shpo]\n---\nx", products={"shop"})
    assert "unknown product 'shpo'" in e.value.error.message


# --- assembly ----------------------------------------------------------------------------------


def test_assembly_filters_by_role_and_product_in_a_stable_order():
    files = [
        parse_rule("rules/30-late.md", b"---\norder: 30\n---\nLATE"),
        parse_rule("rules/20-shop.md", b"---\norder: 20\nproducts: [shop]\n---\nSHOP ONLY"),
        parse_rule("rules/10-b.md", b"---\norder: 10\nroles: [builder]\n---\nB"),
        parse_rule("rules/10-a.md", b"---\norder: 10\n---\nA"),
        parse_rule("shop:.cockpit/rules/own.md", b"---\norder: 10\n---\nSHOP'S OWN", product="shop"),
        parse_rule("ledger:.cockpit/rules/own.md", b"LEDGER'S OWN", product="ledger"),
    ]
    r = assemble(files, "builder", "shop")
    # by order; at equal order the factory's before the product's, then by name
    assert r.files == ("rules/10-a.md", "rules/10-b.md", "shop:.cockpit/rules/own.md", "rules/20-shop.md",
                       "rules/30-late.md")
    assert r.text.index("A") < r.text.index("B") < r.text.index("SHOP'S OWN") < r.text.index("LATE")
    assert r.hash == text_hash(r.text)
    assert assemble(list(reversed(files)), "builder", "shop") == r  # input order does not matter
    reviewer = assemble(files, "reviewer", "weather")
    assert reviewer.files == ("rules/10-a.md", "rules/30-late.md")
    assert "LEDGER'S OWN" in assemble(files, "reviewer", "ledger").text


def test_book_effective_rules_and_the_system_prompt_puts_them_first(tmp_path):
    from cockpit.agents.roles import system_prompt

    d = write_rules(tmp_path / "rules", {"00-global.md": GLOBAL, "10-builder.md": BUILDER, "20-review.md": REVIEWER})
    book = RuleBook(d)
    builder = book.effective("builder", None)
    assert builder.files == ("rules/00-global.md", "rules/10-builder.md")
    assert book.effective("breaker", None).files == ("rules/00-global.md", "rules/20-review.md")
    prompt = system_prompt(role="builder", agent="builder-1", product="p", rules=builder.text, lessons="LESSONS")
    assert prompt.startswith("<!-- rules/00-global.md -->") and prompt.index("LESSONS") < prompt.index("ROLE: builder")


# --- product rules: from main, never from a worktree or the checkout ----------------------------------


def test_product_rules_come_from_main_not_the_worktree(tmp_path):
    repo = make_repo(tmp_path / "shop", {"app.py": "x = 1\n", ".cockpit/rules/house.md": "---\norder: 5\n---\nMAIN RULE\n"})
    events = Recorder()
    book = RuleBook(write_rules(tmp_path / "rules", {"00-global.md": GLOBAL}), products={"shop": (repo, "main")},
                    emit=events)
    book.refresh_product_sync("shop")
    first = book.effective("builder", "shop")
    assert "MAIN RULE" in first.text and "shop:.cockpit/rules/house.md" in first.files

    # an agent's branch and worktree, and the uncommitted checkout, all say something else
    run_git(repo, "worktree", "add", "-q", "-b", "cockpit/T1", str(tmp_path / "wt"))
    commit_files(tmp_path / "wt", {".cockpit/rules/house.md": "AGENT WROTE THIS\n"}, "agent edits the rules")
    (repo / ".cockpit/rules/house.md").write_text("UNCOMMITTED EDIT\n")
    (repo / ".cockpit/rules/new.md").write_text("UNTRACKED\n")
    assert not book.refresh_product_sync("shop")
    assert book.effective("builder", "shop") == first and not events.events

    # what lands on main is in force, and says so
    run_git(repo, "checkout", "-q", "--", ".cockpit/rules/house.md")
    (repo / ".cockpit/rules/new.md").unlink()
    commit_files(repo, {".cockpit/rules/house.md": "---\norder: 5\n---\nMAIN RULE, REVISED\n"}, "rules on main")
    assert book.refresh_product_sync("shop")
    second = book.effective("builder", "shop")
    assert "MAIN RULE, REVISED" in second.text and "AGENT WROTE THIS" not in second.text
    assert second.hash != first.hash
    ((kind, data, product),) = events.events
    assert kind == Kind.RULES_CHANGED and product == "shop" and data["files"] == ["shop:.cockpit/rules/house.md"]
    # another product never sees shop's rules
    assert "MAIN RULE" not in book.effective("builder", "ledger").text


async def test_product_rules_async_refresh_and_a_broken_one_on_main(tmp_path):
    repo = make_repo(tmp_path / "shop", {"app.py": "", ".cockpit/rules/house.md": "GOOD\n"})
    events = Recorder()
    book = RuleBook(tmp_path / "no-rules-dir", products={"shop": (repo, "main")}, emit=events)
    assert "GOOD" in (await book.current("builder", "shop")).text
    commit_files(repo, {".cockpit/rules/house.md": "---\nroles: [nobody]\n---\nBROKEN\n"}, "break it")
    rules = await book.current("builder", "shop")
    assert "GOOD" in rules.text and "BROKEN" not in rules.text
    (kind, data, product), = events.events
    assert kind == Kind.RULES_ERROR and product == "shop" and data["line"] == 2 and data["in_force"] is True
    assert data["file"].endswith(".cockpit/rules/house.md (on main)")


# --- a broken file keeps the last good version ----------------------------------------------------------


def test_broken_file_keeps_the_last_good_version_and_reports_once(tmp_path):
    d = write_rules(tmp_path / "rules", {"00-global.md": GLOBAL, "10-builder.md": BUILDER})
    events = Recorder()
    book = RuleBook(d, emit=events)
    good = book.effective("builder", None)
    assert not events.events  # the first load is no change

    (d / "10-builder.md").write_text("---\nroles: [builder]\norder: ten\n---\n# Builder\nSOMETHING NEW\n")
    assert not book.refresh()
    assert book.effective("builder", None) == good
    assert events.kinds() == [Kind.RULES_ERROR]
    _, data, _ = events.events[0]
    assert data == {"file": str(d / "10-builder.md"), "line": 3, "message": "order must be a whole number, not 'ten'",
                    "name": "rules/10-builder.md", "in_force": True}
    book.refresh()
    assert events.kinds() == [Kind.RULES_ERROR]  # the same broken bytes are reported once
    assert [str(e) for e in book.errors()] == [f"{d / '10-builder.md'}:3: order must be a whole number, not 'ten'"]

    (d / "10-builder.md").write_text(BUILDER.replace("Done means tested.", "Done means tested on main."))
    assert book.refresh()
    fixed = book.effective("builder", None)
    assert "tested on main" in fixed.text and fixed.hash != good.hash and not book.errors()
    kind, data, _ = events.events[-1]
    assert kind == Kind.RULES_CHANGED and data["files"] == ["rules/10-builder.md"]
    assert data["old_hash"] != data["new_hash"] and data["new_hash"] == book.hash

    # a new file that is broken from the start is not in force; deleting a file takes it out
    (d / "20-new.md").write_text("---\nbogus: 1\n---\nNEW\n")
    (d / "00-global.md").unlink()
    book.refresh()
    now = book.effective("builder", None)
    assert now.files == ("rules/10-builder.md",)
    assert events.events[-2][0] == Kind.RULES_ERROR and events.events[-2][1]["in_force"] is False
    assert events.events[-1][0] == Kind.RULES_CHANGED and events.events[-1][1]["files"] == ["rules/00-global.md"]


# --- the watcher ---------------------------------------------------------------------------------------


async def test_watcher_reports_an_edit_and_a_broken_file_as_they_are_saved(tmp_path):
    d = write_rules(tmp_path / "rules", {"00-global.md": GLOBAL})
    got: asyncio.Queue = asyncio.Queue()
    book = RuleBook(d, emit=lambda kind, data, product: got.put_nowait((kind, data)))
    watcher = RulesWatcher(book)
    watcher.start()
    try:
        await asyncio.wait_for(watcher.ready.wait(), 10)
        before = book.hash
        (d / "00-global.md").write_text(GLOBAL + "Also: small commits.\n")
        kind, data = await asyncio.wait_for(got.get(), 10)
        assert kind == Kind.RULES_CHANGED and data["old_hash"] == before and data["new_hash"] == book.hash
        (d / "00-global.md").write_text("---\norder: [0\n---\nx\n")
        kind, data = await asyncio.wait_for(got.get(), 10)
        assert kind == Kind.RULES_ERROR and data["line"] == 2
        assert "small commits" in book.effective("builder", None).text
    finally:
        await watcher.stop()
    assert watcher._task is None


# --- the CLI -------------------------------------------------------------------------------------------


def factory_with_rules(tmp_path, rules):
    repo = make_repo(tmp_path / "shop", {"app.py": "", ".cockpit/rules/house.md": "---\norder: 50\n---\nSHOP HOUSE RULE\n"})
    write_rules(tmp_path / "rules", rules)
    return write_plain_factory(tmp_path, {"shop": str(repo)})


def test_cli_rules_check_and_show(tmp_path, capsys):
    f = factory_with_rules(tmp_path, {"00-global.md": GLOBAL, "10-builder.md": BUILDER})
    assert main(["rules", "check", "--factory", str(f)]) == 0
    assert "3 rule files OK" in capsys.readouterr().out

    assert main(["rules", "show", "--role", "builder", "--product", "shop", "--factory", str(f)]) == 0
    out = capsys.readouterr().out
    assert out.index("Read before you write") < out.index("Done means tested") < out.index("SHOP HOUSE RULE")
    assert main(["rules", "show", "--role", "reviewer", "--product", "shop", "--factory", str(f)]) == 0
    assert "Done means tested" not in capsys.readouterr().out

    (tmp_path / "rules" / "10-builder.md").write_text("---\nroles: [builder]\norder: 10\nextra stuff\n---\nx\n")
    assert main(["rules", "check", "--factory", str(f)]) == 2
    out = capsys.readouterr().out
    assert f"{tmp_path / 'rules' / '10-builder.md'}:4: expected 'key: value', got 'extra stuff'" in out
    assert main(["rules", "check", "--dir", str(tmp_path / "rules")]) == 2
