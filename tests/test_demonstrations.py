"""Few-shot demonstration selection and compression."""

from __future__ import annotations

import pytest
from conftest import require_data

import promptzip as pz
from promptzip.compressors.demonstrations import DemonstrationCompressor
from promptzip.testing import KeywordScorer

DEMOS = [
    "Q: Tom has 3 apples and buys 5 more. How many apples does he have?\nA: He starts with 3. He buys 5. "
    "3 + 5 = 8. The answer is 8.",
    "Q: A train travels 60 km per hour for 2 hours. How far does it go?\nA: Speed is 60. Time is 2. "
    "60 * 2 = 120. The answer is 120.",
    "Q: Sara had 10 apples and gave away 4 apples. How many apples are left?\nA: She had 10. She gave 4. "
    "10 - 4 = 6. The answer is 6.",
]


def keyword_zipper() -> pz.Zipper:
    return pz.Zipper(DemonstrationCompressor(KeywordScorer()), max_chunk_chars=10**9)


def test_most_similar_demonstrations_survive_intact() -> None:
    question = "Ann has 7 apples and buys 2 more apples. How many apples does Ann have?"
    s = pz.compress_demonstrations(DEMOS, question, budget=60, zipper=keyword_zipper())
    assert s.tokens <= 60
    assert s.intact
    assert 1 not in s.intact  # the train demonstration shares no words with an apple question
    for i in s.intact:
        assert DEMOS[i] in s.text
    assert s.dropped == len(DEMOS) - len(s.kept)


def test_shortened_demonstrations_keep_question_and_answer() -> None:
    question = "How many apples are left after giving some away?"
    s = pz.compress_demonstrations(DEMOS, question, budget=40, zipper=keyword_zipper())
    assert s.tokens <= 40
    partial = [c for c in s.result.chunks if c.kind == "shortened"]
    for c in partial:
        demo = DEMOS[int(c.source_id)]
        assert c.text.startswith(demo.split("\n")[0][:10])
        assert c.text.endswith(demo[demo.rindex("The answer") :])


def test_everything_fits() -> None:
    s = pz.compress_demonstrations(DEMOS, "apples", budget=1000, zipper=keyword_zipper())
    assert s.intact == (0, 1, 2)
    assert s.text == "\n\n".join(DEMOS)


@pytest.mark.parametrize(("demos", "message"), [([], "non-empty"), ("one string", "non-empty"), (["ok", ""], "empty")])
def test_bad_demos(demos: object, message: str) -> None:
    with pytest.raises(pz.InputError, match=message):
        pz.compress_demonstrations(demos, "q", budget=10, zipper=keyword_zipper())  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.data
def test_gsm8k_chain_of_thought_demos_at_250_tokens() -> None:
    from promptzip.evals import data

    require_data("gsm8k")
    demos = [f"Question: {d.question}\nLet's think step by step\n{d.target}" for d in data.load_gsm8k_cot_demos()]
    tok = pz.get_tokenizer("gpt-4o")
    total = tok.count("\n\n".join(demos))
    intact = 0
    problems = data.load_gsm8k_test()[:10]
    for problem in problems:
        s = pz.compress_demonstrations(demos, problem.question, budget=250)
        assert s.tokens <= 250 < total
        intact += len(s.intact)
        for i in s.intact:
            assert demos[i] in s.text
    print(f"GSM8K CoT demos: {total} tokens → ≤ 250; {intact / len(problems):.1f} of 8 demos intact on average")
    assert intact / len(problems) >= 1  # at least one whole demonstration survives on average
