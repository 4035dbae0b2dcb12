"""Per-domain whitening of text vectors: what it does to a catalogue's covariance, and what it leaves alone."""

import pytest
import torch

from prerec_pyro.text_space import shrunk_covariance, whiten_block, whiten_by_domain


def anisotropic(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    """``n`` Gaussian rows with standard deviations 1 .. ``dim`` along a random rotation, and an offset. [n, dim]"""
    generator = torch.Generator().manual_seed(seed)
    rotation, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    scales = torch.arange(1, dim + 1, dtype=torch.float64)
    return (torch.randn(n, dim, generator=generator, dtype=torch.float64) * scales) @ rotation + 3.0


def test_a_large_catalogue_comes_out_isotropic_at_its_own_scale():
    """With many more texts than dimensions the shrinkage is small: the whitened block has mean 0, a covariance
    within 10% of μ·I (its eigenvalues spanned 1 to 64 before), and about the centred block's mean squared norm."""
    block = anisotropic(20_000, 8)
    centred = block - block.mean(0)
    out = whiten_block(block)
    assert out.mean(0).abs().max() < 1e-9
    eigenvalues = torch.linalg.eigvalsh(out.T @ out / len(out))
    mu = float(centred.square().sum(1).mean()) / 8
    assert float(eigenvalues.min()) > 0.9 * mu and float(eigenvalues.max()) < 1.1 * mu
    assert float(out.square().sum(1).mean()) == pytest.approx(8 * mu, rel=0.05)


def test_an_isotropic_catalogue_is_only_centred():
    """Rows ±c·e_i have covariance μ·I already: the shrinkage is 1 and whitening changes nothing but the mean."""
    basis = torch.eye(5, dtype=torch.float64) * 2.0
    block = torch.cat([basis, -basis]) + torch.arange(5, dtype=torch.float64)
    torch.testing.assert_close(whiten_block(block), block - block.mean(0))


def test_fewer_texts_than_dimensions_still_give_a_well_conditioned_covariance():
    """Ten texts in 32 dimensions: the sample covariance is singular, Ledoit-Wolf's is not, and the whitened rows are
    finite."""
    centred = anisotropic(10, 32)
    centred = centred - centred.mean(0)
    sample = centred.T @ centred / len(centred)
    assert float(torch.linalg.eigvalsh(sample).min()) < 1e-8
    assert float(torch.linalg.eigvalsh(shrunk_covariance(centred)).min()) > 1e-3
    assert torch.isfinite(whiten_block(centred)).all()


def test_whitening_turns_with_the_texts():
    """ZCA, the symmetric whitening, keeps the encoder's axes: rotating a catalogue rotates its whitened vectors the
    same way (another whitening would differ by a rotation of its own)."""
    block = anisotropic(500, 6, seed=1)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    torch.testing.assert_close(whiten_block(block @ rotation), whiten_block(block) @ rotation)


def test_each_domain_is_whitened_by_its_own_statistics():
    """A domain's whitened vectors depend on its own catalogue only: another domain's texts change nothing."""
    first, second = anisotropic(300, 4, seed=3).float(), anisotropic(200, 4, seed=4).float()
    together = whiten_by_domain(torch.cat([first, second]), [300, 200])
    assert together.dtype == torch.float32 and together.shape == (500, 4)
    torch.testing.assert_close(together[:300], whiten_block(first))
    other = whiten_by_domain(torch.cat([first, second * 5 + 1]), [300, 200])
    assert torch.equal(other[:300], together[:300])
    one_item = whiten_by_domain(torch.ones(1, 4), [1])
    assert torch.equal(one_item, torch.zeros(1, 4))


@pytest.mark.parametrize("sizes", [[2, 2], [5, 0], [6]])
def test_whiten_by_domain_refuses_sizes_that_do_not_split_the_rows(sizes):
    with pytest.raises(ValueError, match="whiten_by_domain: domain sizes"):
        whiten_by_domain(torch.zeros(5, 3), sizes)
