"""``make bench`` rewrites only its own part of docs/benchmarks.md; hand-written sections stay."""

from __future__ import annotations

from tests.bench.serving import GENERATED_END, GENERATED_START, replace_generated


def test_the_first_run_keeps_the_sections_after_the_old_generated_table() -> None:
    document = "# Serving benchmark\n\nold table\n\n## Reading it\n\nnotes\n\n## Raw fields\n\nmore\n"
    out = replace_generated(document, "# Serving benchmark\n\nnew table\n")
    assert out.startswith(f"{GENERATED_START}\n# Serving benchmark\n\nnew table\n{GENERATED_END}\n")
    assert "old table" not in out
    assert out.endswith("\n## Reading it\n\nnotes\n\n## Raw fields\n\nmore\n")


def test_later_runs_replace_only_what_is_between_the_markers() -> None:
    first = replace_generated("# t\n\nold\n\n## Notes\n\nkept\n", "# t\n\none\n")
    second = replace_generated(first, "# t\n\ntwo\n")
    assert "one" not in second
    assert second.count(GENERATED_START) == 1
    assert second == first.replace("one", "two")


def test_an_empty_document_is_the_generated_part() -> None:
    assert replace_generated("", "# t\n") == f"{GENERATED_START}\n# t\n{GENERATED_END}\n"
