"""Zero-shot diagnostics: each switched-off term, the text head alone, and the rank agreement with SBERT."""

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from prerec_pyro.baselines.simple import SbertScorer
from prerec_pyro.inference.diagnostics import (
    SbertAgreement,
    SequenceCentred,
    SequenceMeanOnly,
    TextHeadOnly,
    WithoutHistory,
    WithoutPopularity,
    WithoutSequence,
    spearman,
)

TARGET = "japan"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "diagnose.py"


def test_spearman_by_hand():
    first = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    second = torch.tensor([[10.0, 20.0, 30.0, 40.0], [4.0, 3.0, 2.0, 1.0]])
    torch.testing.assert_close(spearman(first, second), torch.tensor([1.0, -1.0], dtype=torch.float64))


def test_without_popularity_equals_scoring_with_zero_factors(scored):
    eq8, batch, _ = scored
    without = WithoutPopularity(eq8)(batch)
    counted = batch.candidate_factors().ne(0).any()
    assert counted, "the fixture must have recent counts, or the test shows nothing"
    assert not torch.allclose(without, eq8(batch))
    silenced = replace(batch, factors_candidates=torch.zeros_like(batch.candidate_factors()))  # batches are values
    torch.testing.assert_close(without, eq8(silenced))  # no recent count anywhere: Eq. 8 is popularity-free


def test_without_sequence_scores_with_a_silent_f_seq_and_restores_it(scored):
    eq8, batch, _ = scored
    transformer = eq8.model.f_seq
    without = WithoutSequence(eq8)(batch)
    assert eq8.model.f_seq is transformer, "the run's sequence model must be back after scoring"
    assert not torch.allclose(without, eq8(batch))

    class Silent(torch.nn.Module):
        def forward(self, first, history):
            return torch.zeros(history.shape[0], history.shape[1] + 1, history.shape[2])

    eq8.model.f_seq = Silent()
    torch.testing.assert_close(without, eq8(batch))


def test_f_seq_split_into_shared_and_centred_parts_sums_back_to_eq8(scored):
    eq8, batch, _ = scored
    transformer = eq8.model.f_seq
    full, silent = eq8(batch), WithoutSequence(eq8)(batch)
    shared, centred = SequenceMeanOnly(eq8)(batch), SequenceCentred(eq8)(batch)
    assert eq8.model.f_seq is transformer, "the run's sequence model must be back after scoring"
    assert not torch.allclose(shared, full) and not torch.allclose(centred, full)
    torch.testing.assert_close(full + silent, shared + centred, rtol=1e-4, atol=1e-4)  # linear in the user state
    # the shared part is one user state for every position: without popularity (V the same at every position),
    # shared - silent is the same item prior in every evaluated row
    batch = replace(batch, factors_candidates=torch.zeros_like(batch.candidate_factors()))
    shared, silent = SequenceMeanOnly(eq8)(batch), WithoutSequence(eq8)(batch)
    prior = (shared - silent)[batch.target_mask]  # [A, J]
    torch.testing.assert_close(prior, prior[:1].expand_as(prior), rtol=1e-4, atol=1e-4)


def test_without_history_ranks_every_history_item_last(scored):
    _, batch, text = scored
    scores = WithoutHistory(SbertScorer(text))(batch)  # [R, L, J]
    seen = batch.seen_before(batch.candidate_rows)
    assert seen[batch.target_mask].any()
    lowest = torch.finfo(scores.dtype).min
    assert (scores[seen] == lowest).all() and (scores[~seen] > lowest).all()


def test_text_head_only_with_identity_head_is_sbert(scored):
    eq8, batch, text = scored
    model = eq8.model
    with torch.no_grad():  # an identity text head: the text-only path must rank exactly as SBERT
        model.f_e.linear = torch.nn.Linear(text.shape[1], text.shape[1])
        model.f_e.linear.weight.copy_(torch.eye(text.shape[1]))
        model.f_e.linear.bias.zero_()
    torch.testing.assert_close(TextHeadOnly(model)(batch), SbertScorer(text)(batch))


def test_agreement_passes_scores_through_and_records_correlations(scored):
    eq8, batch, text = scored
    probe = SbertAgreement(eq8, text)
    torch.testing.assert_close(probe(batch), eq8(batch))
    assert -1.0 <= probe.mean_correlation() <= 1.0
    perfect = SbertAgreement(SbertScorer(text), text)
    perfect(batch)
    assert perfect.mean_correlation() == pytest.approx(1.0, abs=1e-6)


def test_diagnose_script_prints_each_term(pretrained, capsys):
    run_dir, _ = pretrained
    spec = importlib.util.spec_from_file_location("diagnose", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    table = script.main(script.parse_args(["--run", str(run_dir), "--target", TARGET, "--n-boot", "10"]))
    assert {"PreRec", "PreRec without popularity", "PreRec without sequence model",
            "PreRec with f_seq's shared state only", "PreRec with f_seq centred",
            "PreRec, f_seq weighed by the history", "PreRec, f_seq weighed by the history (likelihood)",
            "PreRec, f_seq pooled by the history", "PreRec text head only",
            "POP", "SBERT", "SBERT without history items"} == set(table["method"])
    assert "Spearman" in capsys.readouterr().out and (run_dir / "diagnose_synthetic-small.csv").exists()
    assert set(table["history_items"]) == {"keep", "exclude"}  # every row under both rules
    only = script.main(script.parse_args(["--run", str(run_dir), "--target", TARGET, "--n-boot", "10",
                                          "--history-items", "exclude"]))
    assert set(only["history_items"]) == {"exclude"}
    some = script.main(script.parse_args(["--run", str(run_dir), "--target", TARGET, "--n-boot", "10",
                                          "--terms", "history-weighted", "without-sequence"]))
    assert list(dict.fromkeys(some["method"])) == ["PreRec", "PreRec without sequence model",
                                                   "PreRec, f_seq weighed by the history"]
    weighed = some[some["method"] == "PreRec, f_seq weighed by the history"]["sequence_weight"]
    assert len(weighed) == 2 and weighed.between(0, 1).all() and weighed.nunique() == 1  # one per target
    evidence = some[some["method"] == "PreRec, f_seq weighed by the history"]
    assert (evidence["median_rank_with"] >= 1).all() and (evidence["log_prob_without"] < 0).all()
    printed = capsys.readouterr().out
    assert "mean posterior weight of the sequence model" in printed and "median rank" in printed
