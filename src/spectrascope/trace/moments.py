"""Streaming first and second moments of d-dimensional vectors, in float64.

:class:`RunningMoments` keeps three things, whatever the number of vectors seen:

- ``count``: n, the number of vectors;
- ``sum``: sum_i x_i, float64, shape (d,);
- ``sum_outer``: X^T X = sum_i x_i x_i^T, float64, shape (d, d).

Memory is O(d^2), independent of the corpus; accumulators can be merged, so batches,
shards or workers can be accumulated separately and combined. The covariance is
``(X^T X - n mu mu^T) / (n - ddof)``. Accumulating in float64 keeps this textbook
formula accurate: its cancellation error is about 1e-16 * |E[x_i x_j]| / Var, far
below float32 rounding unless a feature's mean exceeds its standard deviation by ~1e6.
"""

from __future__ import annotations

import torch

from spectrascope.errors import NumericalError, OptionError


class RunningMoments:
    """Count, sum and X^T X of a stream of vectors, accumulated in float64 with torch.

    Args:
        dim: vector width d; ``None`` takes it from the first :meth:`update`.
        device: where the accumulators live; ``None`` takes the first update's device
            (so activations on a GPU are accumulated on that GPU).
    """

    def __init__(self, dim: int | None = None, device: torch.device | str | None = None) -> None:
        self.count: int = 0
        self._sum: torch.Tensor | None = None
        self._sum_outer: torch.Tensor | None = None
        self._device = torch.device(device) if device is not None else None
        if dim is not None:
            self._allocate(dim, self._device or torch.device("cpu"))

    def _allocate(self, dim: int, device: torch.device) -> None:
        self._sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self._sum_outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)
        self._device = device

    @property
    def dim(self) -> int | None:
        """Vector width d, or ``None`` before the first update of a lazily sized accumulator."""
        return None if self._sum is None else self._sum.shape[0]

    @property
    def sum(self) -> torch.Tensor:
        """sum_i x_i, float64, shape (d,)."""
        return self._require()[0]

    @property
    def sum_outer(self) -> torch.Tensor:
        """X^T X = sum_i x_i x_i^T, float64, shape (d, d)."""
        return self._require()[1]

    def update(self, vectors: torch.Tensor, mask: torch.Tensor | None = None) -> RunningMoments:
        """Add vectors.

        Args:
            vectors: (..., d); all leading dimensions are flattened into rows, e.g.
                (batch, pos, d) activations give batch * pos vectors.
            mask: optional, shape ``vectors.shape[:-1]``; rows where it is false / 0
                (padding) are skipped.

        Returns:
            ``self``.
        """
        if vectors.dim() < 1:
            raise OptionError("RunningMoments.update needs vectors of shape (..., d)")
        dim = vectors.shape[-1]
        if self._sum is None:
            self._allocate(dim, self._device or vectors.device)
        elif dim != self.dim:
            raise OptionError(f"RunningMoments of width {self.dim} got vectors of width {dim}")
        rows = vectors.detach().reshape(-1, dim)
        if mask is not None:
            if tuple(mask.shape) != tuple(vectors.shape[:-1]):
                raise OptionError(
                    f"mask shape {tuple(mask.shape)} does not match the vectors' leading shape "
                    f"{tuple(vectors.shape[:-1])}"
                )
            rows = rows[mask.reshape(-1).to(device=rows.device, dtype=torch.bool)]
        rows64 = rows.to(device=self._device, dtype=torch.float64)
        assert self._sum is not None and self._sum_outer is not None
        self._sum += rows64.sum(dim=0)
        self._sum_outer.addmm_(rows64.T, rows64)
        self.count += rows64.shape[0]
        return self

    def merge(self, other: RunningMoments) -> RunningMoments:
        """Add another accumulator's vectors into this one (in place); returns ``self``."""
        if other._sum is None:
            return self
        if self._sum is None:
            self._allocate(other._sum.shape[0], self._device or other._sum.device)
        elif other.dim != self.dim:
            raise OptionError(f"cannot merge RunningMoments of widths {self.dim} and {other.dim}")
        assert self._sum is not None and self._sum_outer is not None and other._sum_outer is not None
        self._sum += other._sum.to(self._sum.device)
        self._sum_outer += other._sum_outer.to(self._sum_outer.device)
        self.count += other.count
        return self

    def without(self, part: RunningMoments) -> RunningMoments:
        """A new accumulator of this one's vectors minus ``part``'s (a subset of them, merged in
        earlier): the leave-one-group-out moments of a jackknife."""
        total, outer = self._require()
        if part.count >= self.count:
            raise NumericalError(f"RunningMoments.without: the part has {part.count} of {self.count} vectors")
        out = RunningMoments()
        if part._sum is None or part._sum_outer is None:
            out._allocate(total.shape[0], total.device)
            out._sum.copy_(total)  # type: ignore[union-attr]
            out._sum_outer.copy_(outer)  # type: ignore[union-attr]
        else:
            out._sum, out._sum_outer, out._device = total - part._sum, outer - part._sum_outer, self._device
        out.count = self.count - part.count
        return out

    @property
    def mean(self) -> torch.Tensor:
        """Mean vector mu, float64, shape (d,)."""
        total, _ = self._require()
        if self.count == 0:
            raise NumericalError("RunningMoments.mean: no vectors accumulated")
        return total / self.count

    def second_moment(self) -> torch.Tensor:
        """Uncentered second moment X^T X / n, float64, shape (d, d)."""
        _, outer = self._require()
        if self.count == 0:
            raise NumericalError("RunningMoments.second_moment: no vectors accumulated")
        return outer / self.count

    def covariance(self, ddof: int = 1) -> torch.Tensor:
        """Covariance (X^T X - n mu mu^T) / (n - ddof), float64, shape (d, d), symmetric.

        ``ddof=1`` is the unbiased sample covariance (``torch.cov``'s default),
        ``ddof=0`` the maximum-likelihood one.
        """
        total, outer = self._require()
        if self.count - ddof <= 0:
            raise NumericalError(f"RunningMoments.covariance: {self.count} vectors are too few for ddof={ddof}")
        centered = outer - torch.outer(total, total) / self.count
        centered = (centered + centered.T) / 2
        return centered / (self.count - ddof)

    def _require(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._sum is None or self._sum_outer is None:
            raise NumericalError("RunningMoments: no vectors accumulated yet (width unknown)")
        return self._sum, self._sum_outer

    def __repr__(self) -> str:
        return f"RunningMoments(dim={self.dim}, count={self.count})"
