"""Property-based proof that what the API accepts, the pipeline stores, and reads back (issue 8).

Three sources of requests (tests/handlers/fuzz.py): generated from `record.schema.json`, the same records
with one harmful mutation, and the corpus of every harmful input the issue names. Each request goes
through ingest -> processor (the local runtime's event source mapping, in-process) -> query, and must
hold every property of `fuzz.run_case`: a 202 ends with every record PROCESSED or REJECTED and readable
with 200; a refusal is a 4xx in the documented error shape; nothing is stored or counted twice; nothing
is dead-lettered.
Mutated and corpus requests must also be refused (or, for the harmless neighbours, accepted) as listed.

Every case runs even when one fails, and a failure lists how many cases broke which property, by kind of
input: run against an older handlers/ (`git checkout <older commit> -- handlers` in this tree), this
file measures it.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

from tests.handlers.fuzz import (
    ACCEPTED,
    MUTATIONS,
    REFUSED,
    Case,
    corpus,
    generated,
    mutated,
    run_case,
    summary,
)
from tests.handlers.harness import Pipeline
from tests.tiers import examples

# Examples per run (derandomized: the same cases every run, so these are the suite's counts; the fast tier
# runs a tenth as many, tests/tiers.py).
GENERATED_EXAMPLES = examples(120)
MUTATED_EXAMPLES = examples(80)


def _settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


def test_every_corpus_case_holds_the_properties(pipeline: Pipeline) -> None:
    cases = corpus()
    answers: Counter[str] = Counter()
    failures = [(case, problems) for case in cases if (problems := run_case(pipeline, case, answers))]
    assert not failures, summary(failures, len(cases))
    assert len(cases) >= 70 and answers[ACCEPTED] >= 15 and answers[REFUSED] >= 50, answers


def test_generated_requests_hold_the_properties(pipeline: Pipeline) -> None:
    failures: list[tuple[Case, list[str]]] = []
    answers: Counter[str] = Counter()

    @_settings(GENERATED_EXAMPLES)
    @given(case=generated())
    def check(case: Case) -> None:
        if problems := run_case(pipeline, case, answers):
            failures.append((case, problems))

    check()
    total = sum(answers.values())
    assert not failures, summary(failures, total)
    assert total >= GENERATED_EXAMPLES, answers  # hypothesis really ran them
    # Both doors are exercised: schema-valid records the store takes, and ones it cannot hold.
    assert answers[ACCEPTED] >= total // 5 and answers[REFUSED] >= total // 10, answers


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
def test_mutated_requests_are_refused_and_hold_the_properties(pipeline: Pipeline, kind: str) -> None:
    """Every kind of harm, each its own share of the examples (a random pick of kinds could miss one)."""
    failures: list[tuple[Case, list[str]]] = []
    answers: Counter[str] = Counter()
    examples = max(MUTATED_EXAMPLES // len(MUTATIONS), 5)

    @_settings(examples)
    @given(case=mutated(kind))
    def check(case: Case) -> None:
        assert case.name == kind
        if problems := run_case(pipeline, case, answers):
            failures.append((case, problems))

    check()
    assert not failures, summary(failures, sum(answers.values()))
    assert sum(answers.values()) >= examples, answers  # hypothesis really ran them
