"""`python -m bench validator` runs: its validators agree with each other on its two corpora (so the
timings compare the same verdicts), and every one of them is still callable."""

from __future__ import annotations

from bench import validator


def test_every_validator_of_the_bench_runs_and_gives_the_corpus_verdict() -> None:
    corpora = validator.corpora(20)
    for name, check in validator.validators().items():
        verdicts = {corpus: [check(record) for record in records] for corpus, records in corpora.items()}
        if name.startswith("hand-written") or name == "jsonschema (all errors)":  # lists of problems
            assert all(not found for found in verdicts["valid"]) and all(verdicts["invalid"]), name
        else:  # is_valid-style booleans
            assert all(verdicts["valid"]) and not any(verdicts["invalid"]), name
    assert set(validator.measure(1, 5)) == {"valid", "invalid"}
