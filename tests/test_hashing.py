"""Feature hashes: stable, seeded by the fingerprint, sensitive to every byte of the row."""

from __future__ import annotations

import pyarrow as pa

from oa_dagster.conform.hashing import hash_strings, hex16


def digests(values: list[str | None], fingerprint: str = "0000") -> list[str]:
    return hex16(hash_strings(pa.array(values, pa.string()), fingerprint)).to_pylist()


def test_hash_is_sixteen_lower_case_hex_digits() -> None:
    for digest in digests(["", "a", "x" * 1000]):
        assert len(digest) == 16 and int(digest, 16) >= 0 and digest == digest.lower()


def test_hash_of_a_row_does_not_change_between_runs_or_batches() -> None:
    rows = [f"{i} MAIN ST" for i in range(20)]
    assert digests(rows) == digests(rows)
    assert digests(rows)[5:10] == digests(rows[5:10])
    assert digests(pa.array(rows).slice(3, 4).to_pylist()) == digests(rows)[3:7]


def test_every_byte_and_the_length_change_the_hash() -> None:
    base = "12 MAIN STREET OAKLAND 94612"
    variants = [base[:i] + chr(ord(base[i]) ^ 1) + base[i + 1 :] for i in range(len(base))]
    variants += [base + "\x00", base[:-1], ""]
    assert len(set(digests([base, *variants]))) == len(variants) + 1


def test_fingerprint_seeds_the_hash() -> None:
    assert set(digests(["a", "b"], "one")).isdisjoint(digests(["a", "b"], "two"))


def test_no_collisions_on_many_similar_rows() -> None:
    rows = [f"{i}\x1f{i % 97} OAK AVE\x1f{i % 13}" for i in range(200_000)]
    assert len(set(digests(rows))) == len(rows)


def test_hex_encoding_matches_python() -> None:
    values = hash_strings(pa.array(["abc", "def"]), "f")
    assert hex16(values).to_pylist() == [f"{int(v):016x}" for v in values]


def test_hash_of_a_row_does_not_depend_on_the_lengths_of_its_neighbours() -> None:
    # rows of one length are hashed as a padded matrix; a very long neighbour takes the longest-first path
    rows = [f"{i:05d}\x1fOAK AVE\x1f{'x' * (i % 11)}" for i in range(300)]
    alone = digests(rows)
    with_long_row = digests([*rows, "y" * 50_000])
    with_empty_and_null = digests([*rows, "", None])
    assert with_long_row[:300] == alone == with_empty_and_null[:300]
