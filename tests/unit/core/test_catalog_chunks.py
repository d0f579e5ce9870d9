"""Registry searches by name go in chunks whose URL-encoded filter fits a server's request line (ADR 0022)."""

from __future__ import annotations

from urllib.parse import quote_plus

from modelyard.core import catalog


def test_chunks_keep_order_and_every_name() -> None:
    names = [f"pickup_eta-r{i:04d}" for i in range(450)]
    chunks = list(catalog._chunks(names))
    assert [name for chunk in chunks for name in chunk] == names
    assert all(len(chunk) <= catalog.NAMES_PER_QUERY for chunk in chunks)


def test_long_names_make_smaller_chunks_whose_filter_fits() -> None:
    names = [f"a-long-family-name-{i:04d}-in-a-region-called-{'o' * 30}'s" for i in range(200)]
    chunks = list(catalog._chunks(names))
    assert len(chunks) > 2
    for chunk in chunks:
        assert len(quote_plus(catalog._in_filter("name", chunk))) <= catalog.FILTER_BYTES


def test_a_name_longer_than_the_budget_still_gets_a_chunk_of_its_own() -> None:
    giant = "m" * (catalog.FILTER_BYTES + 10)
    assert list(catalog._chunks(["a", giant, "b"])) == [["a"], [giant], ["b"]]
