"""The logits over a batch's candidates, U·V_c(t) + Z_c(t)·W_z + D_k·W_d [+ w_r·1[c seen]], computed without
building V_c(t) for every target (docs/DESIGN.md, "Scoring only what is ranked").

``PreRecModel`` (models/prerec.py, the PGM) inherits these methods; they read its networks and deterministic nodes
(``static_item_parts``, ``eps_z_rows``, f_pop, W_z, w_r) and add no node of their own. The item side of a score is
[V_c(t), bias_c(t)] against the user side [U, 1]: the static part (m + eps_v + D_k [; X̂], D_k·W_d) is built once per
batch, and only popularity, Z_c(t) = f_pop(F_c(t)) + eps_z, changes with the period t of a target. Three paths:
sampled candidates (training), a whole catalogue with gradients (the full likelihood), a whole catalogue without
(evaluation, recommendation: one product, then each period's counted items corrected in place).

Shape legend: A = target positions, C = candidates, P = periods, Q = distinct factor rows, B = embedding size,
T = text dimension, F = popularity factors.
"""

from __future__ import annotations

from itertools import accumulate

import numpy as np
import torch
from torch import Tensor

from prerec_pyro.data.batches import PreRecBatch, distinct_rows


class CandidateScores:
    """The candidate-scoring algebra of ``PreRecModel`` (module docstring)."""

    def _candidate_logits(self, users: Tensor, batch: PreRecBatch, latent: dict, catalogue: Tensor | None,
                          sequence: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """U·V_c(t) + Z_c(t)·W_z + D_k·W_d [+ w_r·1[c seen]] for every candidate c at the batch's targets, in
        ``batch.target_layout()`` order, from the targets' user states ``users`` [A, B (+ T)]. A whole catalogue
        without gradients: one product, then each period's counted items corrected (``_catalogue_scores``); with
        gradients: one product per period, [U, 1] against that period's item side [V_c(t), bias_c(t)], so the bias
        costs no pass of its own; sampled candidates: the static side once for every target, plus the periods'
        popularity terms (``_sampled_popularity``). With the targets' f_seq outputs ``sequence`` [A, B] (a whole
        catalogue, no gradients), also their term n·V_c(t). ([A, C], [A, C] or None)"""
        order, sizes = batch.target_layout()
        rows = batch.candidate_rows  # [C]
        users = torch.cat([users, users.new_ones(len(order), 1)], dim=1)  # [A, B (+ T) + 1]
        term = None
        assert sequence is None or (batch.negatives is None and not torch.is_grad_enabled())
        if batch.negatives is None:  # a whole catalogue: its item side as if uncounted, then the counted pairs
            items = self._catalogue_side(rows, batch, latent, catalogue)  # [C, B (+ T) + 1]
            if torch.is_grad_enabled():
                groups = torch.split(users, sizes)  # a view per period: only this path takes them
                out = torch.cat([groups[p] @ items_t.T for p, items_t in self._period_items(items, batch, sizes)])
            else:
                out, term = self._catalogue_scores(users, items, batch, sizes, sequence)  # [A, C]
            return self._with_repeats(out, batch, rows, order), term
        value, bias = self.static_item_parts(rows, batch, latent, catalogue)  # [C, B (+ T)], []
        items = torch.cat([value, bias.expand(len(rows), 1)], dim=1)  # [C, B (+ T) + 1]
        if self.config.use_popularity:  # static part once, f_pop(F) per period
            eps_z = self.eps_z_rows(rows, latent)  # [C, B] or None
            if eps_z is not None:  # eps_z does not change with the period: on the static side
                items = items + self._item_side(eps_z)  # [C, B (+ T) + 1]
            out = users @ items.T + self._sampled_popularity(users, batch, sizes)  # [A, C]
        else:
            out = users @ items.T  # [A, C]
        return self._with_repeats(out, batch, rows, order), term

    def _with_repeats(self, out: Tensor, batch: PreRecBatch, rows: Tensor, order: Tensor) -> Tensor:
        """The logits ``out`` [A, C] plus w_r·1[c seen] when the model has the repeat term (in place without
        gradients). [A, C]"""
        if not self.config.repeat_term:
            return out
        columns, marked, canonical = batch.seen_columns(rows, order)  # [A, L], [A, L], [C]
        if batch.negatives is None:  # a catalogue lists each item once: canonical is the identity
            add = out.scatter_add_ if not torch.is_grad_enabled() else out.scatter_add  # no copy of [A, C]
            return add(1, columns, self.w_r * marked)
        seen = out.new_zeros(out.shape).scatter_add_(1, columns, marked.to(out.dtype))  # [A, C]
        return out + self.w_r * seen[:, canonical]

    def _sampled_popularity(self, users: Tensor, batch: PreRecBatch, sizes: tuple[int, ...]) -> Tensor:
        """U·f_pop(F_c(t)) + f_pop(F_c(t))·W_z of the sampled candidates for the targets' users [A, B (+ T) + 1] (in
        ``target_layout()`` order, grouped by period; eps_z is on the static side): f_pop once per distinct factor
        row, of width B + 1 so that neither the text channel's columns nor the static item side are built again for
        each period. A batch spans hundreds of days of sliding popularity with a few targets each, so the periods
        with the same number of targets n go through one batched product [G, n, B + 1] @ [G, B + 1, C] (about ten
        products, no padding; docs/DESIGN.md, "Scoring only what is ranked"). [A, C]"""
        distinct, index = batch.candidate_factor_rows()  # [Q, F], [P, C]
        z = self.f_pop(distinct)  # [Q, B]
        side = self._popularity_side(z)  # [Q, B + 1]
        device, learned = users.device, self._learned_side(users)  # [A, B + 1]
        if not len(users):
            return users.new_zeros(0, index.shape[1])  # [0, C]
        counts = np.asarray(sizes)  # [P], on the host
        starts = np.cumsum(counts) - counts  # [P]
        buckets = [(size, np.flatnonzero(counts == size)) for size in np.unique(counts[counts > 0]).tolist()]
        targets = [(starts[periods][:, None] + np.arange(size)).ravel() for size, periods in buckets]  # [G * n] each
        back = np.argsort(np.concatenate(targets), kind="stable")  # [A]
        host = np.concatenate([*(periods for _, periods in buckets), *targets, back])  # one copy to the device
        if device.type == "cuda":
            moved = torch.from_numpy(host).pin_memory().to(device, non_blocking=True)  # no wait for the device
        else:
            moved = torch.from_numpy(host)
        sections = [len(periods) for _, periods in buckets] + [len(t) for t in targets] + [len(back)]
        pieces = torch.split(moved, sections)
        blocks = []
        for (size, periods), period_index, target_index in zip(buckets, pieces, pieces[len(buckets):]):
            columns = index[period_index].reshape(-1)  # [G * C]
            period_side = side.index_select(0, columns).reshape(len(periods), -1, side.shape[1])  # [G, C, B + 1]
            period_users = learned.index_select(0, target_index)  # [G * n, B + 1]
            product = torch.bmm(period_users.reshape(len(periods), size, -1), period_side.transpose(1, 2))
            blocks.append(product.reshape(len(target_index), -1))  # [G * n, C]
        return torch.cat(blocks).index_select(0, pieces[-1])  # [A, C]

    def _period_items(self, items: Tensor, batch: PreRecBatch, sizes: tuple[int, ...]):
        """Yields (period, [V_c(t), bias_c(t)]) [C, B (+ T) + 1] for each period with targets of a whole catalogue
        (the full likelihood's training path), from its item side as if uncounted ``items`` (``_catalogue_side``)."""
        periods = [p for p, size in enumerate(sizes) if size]
        if not self.config.use_popularity:
            yield from ((p, items) for p in periods)
            return
        sides, counted = self._counted_sides(batch, len(sizes))
        width = self.config.hidden_dim
        for p in periods:
            cols, index = counted[p]  # a period lists an item once
            delta = sides.index_select(0, index)  # [n, B + 1]
            side = torch.cat([self._pad(delta[:, :width]), delta[:, width:]], dim=-1)  # [n, B (+ T) + 1]
            yield p, items.index_put((cols,), items[cols] + side)

    def _catalogue_scores(self, users: Tensor, items: Tensor, batch: PreRecBatch, sizes: tuple[int, ...],
                          sequence: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Scores of a whole catalogue without gradients (evaluation, recommendation) for the targets' user sides
        ``users`` [A, B (+ T) + 1]: one product of every target with the items as if uncounted (``items``, F = 0:
        ``_catalogue_side``), then each period's counted items corrected in place at width B + 1 (the columns Z
        touches, never the text channel's; ``_add_counted``). With the targets' f_seq outputs ``sequence`` [A, B],
        also their term n·V_c(t), at width B. ([A, C], [A, C] or None)"""
        width = self.config.hidden_dim
        out = users @ items.T  # [A, C]
        term = None if sequence is None else sequence @ items[:, :width].T  # [A, C]
        if self.config.use_popularity:
            sides, counted = self._counted_sides(batch, len(sizes))
            self._add_counted(out, self._learned_side(users), sides, counted, sizes)
            if term is not None:
                self._add_counted(term, sequence, sides[:, :width], counted, sizes)
        return out, term

    def _catalogue_side(self, rows: Tensor, batch: PreRecBatch, latent: dict, catalogue: Tensor | None) -> Tensor:
        """[V_c, bias_c] of a whole catalogue as if uncounted (F = 0: f_pop(0) + eps_z), written into one
        [C, B (+ T) + 1] tensor: the wide text channel is copied once, not once per term. [C, B (+ T) + 1]"""
        width, text = self.config.hidden_dim, self.config.text_channel != "off"
        value, bias = self.static_item_parts(rows, batch, latent, catalogue, with_text=False)  # [C, B], []
        if self.config.use_popularity:
            eps_z = self.eps_z_rows(rows, latent)  # [C, B] or None
            z = self.f_pop(value.new_zeros(self.config.n_factors)) + (0.0 if eps_z is None else eps_z)  # [B] or [C, B]
            value, bias = value + z, bias + z @ self.w_z  # [C, B], [] or [C]
        items = value.new_empty(len(rows), width + (self.item_text.shape[1] if text else 0) + 1)
        items[:, :width] = value
        if text:
            items[:, width:-1] = self.normalised_text(rows)  # [C, T]
        items[:, -1] = bias
        return items

    def _counted_sides(self, batch: PreRecBatch, n_periods: int) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """What f_pop(F) adds over f_pop(0) to the columns Z touches, once per distinct factor row of the batch's
        counted (period, item) pairs [Q, B + 1]; and for each period its counted items (F != 0) with their rows of
        that table: (columns [n], rows [n]). The callers gather a period's rows when they use them: the [N, B + 1]
        of every counted pair at once is the largest tensor of an evaluation and memory-bound to write and read
        back."""
        period, column, factors = batch.counted_candidates()  # [N], [N], [N, F]: the counted (period, item)s
        distinct, index = distinct_rows(factors)  # [Q, F], [N]: counts repeat across the periods
        sides = self._popularity_side(self.f_pop(distinct) - self.f_pop(factors.new_zeros(factors.shape[-1])))
        counted = torch.bincount(period, minlength=n_periods).tolist()
        return sides, list(zip(torch.split(column, counted), torch.split(index, counted)))

    @staticmethod
    def _add_counted(out: Tensor, users: Tensor, sides: Tensor, counted: list[tuple[Tensor, Tensor]],
                     sizes: tuple[int, ...]) -> None:
        """Adds users[a]·sides[rows_k] to out[a, column_k] for every target a of each period and each of its counted
        items k (``users`` [A, W], ``out`` [A, C], ``sides`` [Q, W]; a period's targets are consecutive rows,
        ``counted`` as ``_counted_sides`` gives it): a product per period [n_p, counted_p]."""
        starts = [0, *accumulate(sizes)]
        for p, (cols, index) in enumerate(counted):
            if sizes[p] and len(cols):
                delta = sides.index_select(0, index)  # [counted_p, W]: gathered per period, while it is in cache
                out[starts[p]: starts[p + 1]].index_add_(1, cols, users[starts[p]: starts[p + 1]] @ delta.T)

    def _item_side(self, z: Tensor) -> Tensor:
        """What a popularity term Z [*S, B] adds to the item side [V, bias]: [Z (; 0), Z·W_z]. [*S, B (+ T) + 1]"""
        return torch.cat([self._pad(z), (z @ self.w_z).unsqueeze(-1)], dim=-1)

    def _popularity_side(self, z: Tensor) -> Tensor:
        """The columns of the item side a popularity term Z [*S, B] touches: [Z, Z·W_z]. [*S, B + 1]"""
        return torch.cat([z, (z @ self.w_z).unsqueeze(-1)], dim=-1)

    def _learned_side(self, users: Tensor) -> Tensor:
        """The user columns that meet ``_popularity_side``: U's learned part and the bias's 1, of the user side
        [A, B (+ T) + 1]. [A, B + 1]"""
        return torch.cat([users[:, :self.config.hidden_dim], users[:, -1:]], dim=1)

