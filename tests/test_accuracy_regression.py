"""CI's accuracy guard: the committed reference scores must be reproduced."""
import pytest

from bench import regression


@pytest.mark.parametrize("sweep", regression.SWEEPS, ids=lambda s: s.name)
def test_reference_scores_are_reproduced(sweep):
    problems = regression.compare(sweep, regression.compute(sweep))
    assert not problems, "\n".join(problems)


def test_the_guard_notices_a_moved_score():
    sweep = regression.SWEEPS[0]
    import json

    want = json.loads(sweep.path.read_text())["scores"]
    key = next(iter(want))
    moved = {k: dict(v) for k, v in want.items()}
    moved[key]["map_tie_aware"] += 2 * regression.TOLERANCE
    assert regression.compare(sweep, moved) and not regression.compare(sweep, want)
