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

from contextlib import contextmanager
from itertools import accumulate

import numpy as np
import torch
from torch import Tensor

from prerec_pyro.data.batches import PreRecBatch, distinct_rows

# The largest cosine table of a catalogue's text kept through an evaluation (``_scaled_cosines``): 2^26 float32
# entries, 256 MiB, a catalogue of 8,192 items; larger ones compute each batch's distinct rows again.
COSINE_TABLE_ENTRIES = 2**26


class CandidateScores:
    """The candidate-scoring algebra of ``PreRecModel`` (module docstring)."""

    _item_side_memo: dict | None = None  # a catalogue's f_e(X) and item side, inside ``fixed_item_side`` only

    @contextmanager
    def fixed_item_side(self):
        """A block in which a whole catalogue's m = f_e(X) and its item side as if uncounted are built once per
        domain and catalogue, then reused by every batch without gradients. Only for a scorer whose item latents
        (D, eps_v, eps_v_shared, eps_z) and networks stay fixed through the block: MAP or Eq. 8 over one
        evaluation's batches, never a scorer that draws latents per batch (docs/DESIGN.md, "Scoring only what is
        ranked"). Pointing the model at another catalogue empties it."""
        outer = self._item_side_memo
        self._item_side_memo = {} if outer is None else outer
        try:
            yield self
        finally:
            self._item_side_memo = outer

    def _memoised(self, key: tuple, build):
        """``build()``, kept under ``key`` inside ``fixed_item_side`` when no gradient is taken."""
        memo = self._item_side_memo
        if memo is None or torch.is_grad_enabled():
            return build()
        if key not in memo:
            memo[key] = build()
        return memo[key]

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
            key = ("item side", batch.domain, batch.item_offset, len(rows))
            items = self._memoised(key, lambda: self._catalogue_side(rows, batch, latent, catalogue))  # [C, W + 1]
            if torch.is_grad_enabled():
                groups = torch.split(users, sizes)  # a view per period: only this path takes them
                out = torch.cat([groups[p] @ items_t.T for p, items_t in self._period_items(items, batch, sizes)])
            else:
                out, term = self._catalogue_scores(users, items, batch, sizes, sequence)  # [A, C]
            return self._with_repeats(out, batch, rows, order), term
        value, bias = self.static_item_parts(rows, batch, latent, catalogue)  # [C, B (+ T)], []
        items = torch.cat([value, bias.expand(len(rows), 1)], dim=1)  # [C, B (+ T) + 1]
        if self.config.use_popularity:  # static part once, what counted candidates add per period
            items = items + self._item_side(self._uncounted_z(rows, latent))  # [C, B (+ T) + 1]: constant in t
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
        """U·(f_pop(F_c(t)) - f_pop(0)) + (f_pop(F_c(t)) - f_pop(0))·W_z of the sampled candidates for the targets'
        users [A, B (+ T) + 1] (in ``target_layout()`` order, grouped by period; f_pop(0) and eps_z are on the
        static side): what a period's counted candidates (F != 0) add, zero for the rest. f_pop runs once per
        distinct factor row, at width B + 1, so that neither the text channel's columns nor the static item side
        are built again for each period. A batch spans hundreds of days of sliding popularity with a few targets
        each, so the periods with the same number of targets n go through one batched product with their counted
        candidates, [G, n, B + 1] @ [G, B + 1, K] (K: the most any of them counts; about ten products;
        docs/DESIGN.md, "Scoring only what is ranked"). [A, C]"""
        distinct, index = batch.candidate_factor_rows()  # [Q, F], [P, C]
        uncounted, counts = batch.candidate_counted()  # on the host
        side = self._counted_side(distinct)  # [Q, B + 1]
        side = torch.cat([side, side.new_zeros(1, side.shape[1])])  # [Q + 1, B + 1]: row Q pads
        device, learned = users.device, self._learned_side(users)  # [A, B + 1]
        if not len(users):
            return users.new_zeros(0, index.shape[1])  # [0, C]
        targets_per_period, counted_per_period = np.asarray(sizes), np.asarray(counts)  # [P], [P], on the host
        starts = np.cumsum(targets_per_period) - targets_per_period  # [P]
        buckets = [(size, np.flatnonzero(targets_per_period == size))
                   for size in np.unique(targets_per_period[targets_per_period > 0]).tolist()]
        targets = [(starts[periods][:, None] + np.arange(size)).ravel() for size, periods in buckets]  # [G * n] each
        back = np.argsort(np.concatenate(targets), kind="stable")  # [A]
        host = np.concatenate([*(periods for _, periods in buckets), *targets, back, counted_per_period])
        if device.type == "cuda":  # one copy to the device, no wait for it
            moved = torch.from_numpy(host).pin_memory().to(device, non_blocking=True)
        else:
            moved = torch.from_numpy(host)
        sections = [len(periods) for _, periods in buckets] + [len(t) for t in targets] + [len(back), len(counts)]
        pieces = torch.split(moved, sections)
        counted = index != uncounted  # [P, C]
        first = torch.argsort(counted.logical_not().to(torch.uint8), dim=1, stable=True)  # [P, C]: counted first
        columns, rows = [], []
        for (size, periods), period_index in zip(buckets, pieces):
            width = int(counted_per_period[periods].max())  # K, on the host
            cols = first[period_index, :width]  # [G, K]
            pad = torch.arange(width, device=device) >= pieces[-1][period_index].unsqueeze(1)  # [G, K]
            columns.append(cols)
            rows.append(index[period_index].gather(1, cols).masked_fill(pad, len(side) - 1))  # [G, K]
        shapes = [(len(periods), size) for size, periods in buckets]
        ordered = learned.index_select(0, torch.cat(pieces[len(buckets):-2]))  # [A, B + 1]: bucket by bucket
        out = BucketProducts.apply(ordered, side, rows, columns, shapes, index.shape[1])  # [A, C]
        return out.index_select(0, pieces[-2])  # [A, C]

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
        ``_catalogue_side``; the "last" text channel's columns from its cosine rows, ``_text_channel_scores``), then
        each period's counted items corrected in place at width B + 1 (the columns Z touches, never the text
        channel's; ``_add_counted``). With the targets' f_seq outputs ``sequence`` [A, B],
        also their term n·V_c(t), at width B. ([A, C], [A, C] or None)"""
        width, learned = self.config.hidden_dim, self._learned_side(users)  # [A, B + 1]
        if self.config.text_channel == "last":  # the text columns from cosine rows (``_text_channel_scores``)
            out = self._text_channel_scores(users[:, width:-1], batch, items[:, width:-1])  # [A, C]
            out.addmm_(learned, self._learned_side(items).T)  # [A, C]
        else:
            out = users @ items.T  # [A, C]
        term = None if sequence is None else sequence @ items[:, :width].T  # [A, C]
        if self.config.use_popularity:
            sides, counted = self._counted_sides(batch, len(sizes))
            self._add_counted(out, learned, sides, counted, sizes)
            if term is not None:
                self._add_counted(term, sequence, sides[:, :width], counted, sizes)
        return out, term

    def _text_channel_scores(self, users: Tensor, batch: PreRecBatch, text: Tensor) -> Tensor:
        """The text channel's scores users·X̂_c [A, C], for the "last" channel's user side ``users`` [A, T] =
        τ·X̂_last (0 at a window's first position) against the catalogue's X̂ ``text`` [C, T]: τ·cos(X_last, X_c),
        rows of the catalogue's cosine table gathered, one computed per distinct last item instead of an
        [A, T] @ [T, C] product (targets repeat their last items: a validation scores every position). Inside
        ``fixed_item_side`` the table is kept for the block while it fits ``COSINE_TABLE_ENTRIES`` (docs/DESIGN.md,
        "Scoring only what is ranked"). The same scores up to float rounding. [A, C]"""
        row, last, has_last = self.previous_positions(batch, batch.target_layout()[0])  # [A] each
        local = batch.items[row, last] - batch.item_offset  # [A]: the last item's catalogue row
        inside = has_last & (local >= 0) & (local < len(text))  # [A]
        source, index = self._scaled_cosines(batch, torch.where(inside, local, 0), text)  # [N, C], [A]
        out = source.index_select(0, index)  # [A, C]
        others = (~inside).nonzero().squeeze(1)  # [A']: no last item, or one from no row of this catalogue
        if len(others):
            out.index_copy_(0, others, users.index_select(0, others) @ text.T)  # [A', C]
        return out

    def _scaled_cosines(self, batch: PreRecBatch, rows: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
        """τ·cos(X_r, X_c) = τ·X̂_r·X̂_c of the catalogue rows ``rows`` [A] against every item of the catalogue
        ``text`` [C, T], as a table and the index of each row in it: each distinct row's product once per batch; inside
        ``fixed_item_side`` (no gradients, C² <= ``COSINE_TABLE_ENTRIES``) once for the block, in a [C, C] table
        filled as rows are asked for (τ and X̂ are fixed there). ([N, C], [A])"""
        tau, memo, size = self.log_tau.exp()[0], self._item_side_memo, len(text)
        if memo is None or torch.is_grad_enabled() or size * size > COSINE_TABLE_ENTRIES:
            distinct, inverse = torch.unique(rows, return_inverse=True)  # [U], [A]
            return (text.index_select(0, distinct) @ text.T).mul_(tau), inverse  # [U, C], [A]
        key = ("cosine table", batch.domain, batch.item_offset, size)
        if key not in memo:
            memo[key] = (text.new_empty(size, size), torch.zeros(size, dtype=torch.bool, device=text.device))
        table, filled = memo[key]  # [C, C], [C]
        missing = torch.unique(rows[~filled[rows]])  # [U']
        if len(missing):
            table[missing] = (text.index_select(0, missing) @ text.T).mul_(tau)  # [U', C]
            filled[missing] = True
        return table, rows  # [C, C], [A]

    @staticmethod
    def previous_positions(batch: PreRecBatch, order: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For each flat position ``order`` [A] of [R, L]: its window (row), the position of the history item before
        it (0 at position 0), and whether there is one (position > 0): the last item that the user state's skip and
        text channel read. ([A], [A], [A])"""
        length = batch.items.shape[1]
        row, position = order // length, order % length  # [A], [A]
        return row, (position - 1).clamp(min=0), position > 0  # [A], [A], [A]

    def _catalogue_side(self, rows: Tensor, batch: PreRecBatch, latent: dict, catalogue: Tensor | None) -> Tensor:
        """[V_c, bias_c] of a whole catalogue as if uncounted (F = 0: f_pop(0) + eps_z), written into one
        [C, B (+ T) + 1] tensor: the wide text channel is copied once, not once per term. [C, B (+ T) + 1]"""
        assert batch.negatives is None, "a catalogue's rows are item_offset + arange(n_domain_items)"
        width, text = self.config.hidden_dim, self.config.text_channel != "off"
        value, bias = self.static_item_parts(rows, batch, latent, catalogue, with_text=False)  # [C, B], []
        if self.config.use_popularity:
            z = self._uncounted_z(rows, latent)  # [B] or [C, B]
            value, bias = value + z, bias + z @ self.w_z  # [C, B], [] or [C]
        items = value.new_empty(len(rows), width + (self.item_text.shape[1] if text else 0) + 1)
        items[:, :width] = value
        if text:
            items[:, width:-1] = self.item_text_unit[batch.item_offset: batch.item_offset + len(rows)]  # [C, T]: X̂
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
        sides = self._counted_side(distinct)  # [Q, B + 1]
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

    def _uncounted_z(self, rows: Tensor, latent: dict) -> Tensor:
        """Z of items ``rows`` [C] as if uncounted (F = 0), f_pop(0) + eps_z: the part of Z that does not change
        with the period, on the static item side of both candidate paths. [B] or [C, B]"""
        eps_z = self.eps_z_rows(rows, latent)  # [C, B] or None
        return self.f_pop(self.item_text.new_zeros(self.config.n_factors)) + (0.0 if eps_z is None else eps_z)

    def _counted_side(self, factors: Tensor) -> Tensor:
        """What factor rows ``factors`` [Q, F] add over F = 0 to the columns Z touches (``_popularity_side`` of
        f_pop(F) - f_pop(0)): the counted candidates' part, beside ``_uncounted_z`` on the static side. [Q, B + 1]"""
        return self._popularity_side(self.f_pop(factors) - self.f_pop(factors.new_zeros(factors.shape[-1])))

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


class BucketProducts(torch.autograd.Function):
    """The popularity products of sampled candidates, bucket by bucket: for the G periods of a bucket with n targets
    each, [G, n, W] users against the rows of ``side`` [Q', W] of their periods' counted candidates [G, K, W]
    (``rows``; padded with a zero row to the bucket's K), written at those candidates' ``columns`` [G, K] (a
    period's columns are distinct) of the [A, C] output, zero elsewhere. Autograd's own bmm would hand the gathered
    rows' gradient back transposed ([G, W, K]) and copy it whole before the scatter into ``side``; here it is formed
    in the gathered layout, and the gathered rows are kept from the forward pass (docs/DESIGN.md, "Scoring only
    what is ranked")."""

    @staticmethod
    def forward(ctx, users: Tensor, side: Tensor, rows: list[Tensor], columns: list[Tensor],
                shapes: list[tuple[int, int]], n_candidates: int) -> Tensor:
        """``users`` [A, W] bucket by bucket; each bucket's ``rows`` and ``columns`` [G, K] and its (G, n). [A, C]"""
        out = users.new_zeros(len(users), n_candidates)  # [A, C]
        gathered, start = [], 0
        for row, col, (groups, size) in zip(rows, columns, shapes):
            block = slice(start, start + groups * size)
            start += groups * size
            if not row.shape[1]:  # no period of the bucket counts a candidate
                gathered.append(None)
                continue
            side_rows = side.index_select(0, row.reshape(-1)).view(groups, row.shape[1], -1)  # [G, K, W]
            values = torch.bmm(users[block].view(groups, size, -1), side_rows.transpose(1, 2))  # [G, n, K]
            out[block].view(groups, size, -1).scatter_(2, col.unsqueeze(1).expand_as(values), values)
            gathered.append(side_rows)
        assert start == len(users)
        ctx.gathered, ctx.rows, ctx.columns, ctx.shapes = gathered, rows, columns, shapes
        ctx.save_for_backward(users)
        ctx.n_side = side.shape[0]
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        (users,) = ctx.saved_tensors
        grad_users = torch.empty_like(users) if ctx.needs_input_grad[0] else None  # [A, W]
        grad_side = users.new_zeros(ctx.n_side, users.shape[1]) if ctx.needs_input_grad[1] else None  # [Q', W]
        start = 0
        for side_rows, row, col, (groups, size) in zip(ctx.gathered, ctx.rows, ctx.columns, ctx.shapes):
            block = slice(start, start + groups * size)
            start += groups * size
            if side_rows is None:  # nothing counted: the bucket's outputs are constant zeros
                if grad_users is not None:
                    grad_users[block] = 0.0
                continue
            cols = col.unsqueeze(1).expand(groups, size, col.shape[1])  # [G, n, K]
            values_grad = grad[block].view(groups, size, -1).gather(2, cols)  # [G, n, K]
            if grad_users is not None:
                torch.bmm(values_grad, side_rows, out=grad_users[block].view(groups, size, -1))
            if grad_side is not None:
                block_users = users[block].view(groups, size, -1)  # [G, n, W]
                if size == 1:  # an outer product: a broadcast is several times faster than bmm's k = 1
                    rows_grad = values_grad.transpose(1, 2) * block_users  # [G, K, W]
                else:
                    rows_grad = torch.bmm(values_grad.transpose(1, 2), block_users)  # [G, K, W]
                grad_side.index_add_(0, row.reshape(-1), rows_grad.reshape(row.numel(), -1))
        return grad_users, grad_side, None, None, None, None
