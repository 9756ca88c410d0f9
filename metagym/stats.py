"""Paired uncertainty for comparisons built by arithmetic on estimates.

Every learner of a run is scored on the same evaluation tasks: task i of a split is the same task
for every learner and every number of adaptation steps. "Learner A minus learner B" is then best
judged on the per-task differences, whose variance leaves out the task effect both share; the old
rule ``sqrt(h_a^2 + h_b^2)`` counts that effect twice and can be many times too wide.

An :class:`Estimate` is a mean together with its *influence values*: for each sampling unit key
(a split's tasks, the training seeds, ...) a tuple with one centred value per unit, the
contribution of that unit to the estimate's deviation from its mean (for a plain mean of values
``x_i``: ``x_i - mean``). Arithmetic adds the influence values of the same key element-wise, so
``a - b`` on the same tasks is exactly the paired difference, and keeps different keys side by
side (independent). A ratio such as ``(score - trivial) / (oracle - trivial)`` or
``1 - after / before`` uses the delta method on the influence values. For a key with ``n`` units
the variance is ``sum(v_i^2) / (n (n - 1))``, which for a plain mean is ``s^2 / n``; variances of
different keys add.

Task-level keys use Student's t with ``n - 1`` degrees of freedom (Welch-Satterthwaite when
several are combined): with 3, 5 or 8 units the normal quantile under-covers (0.80, 0.87, 0.89
for a nominal 0.95, ``tests/test_stats.py``). One unit gives an infinite half-width, never a
zero one. Across training seeds the unit of
replication is the seed: :func:`across_seeds` gives the Student-t interval across seeds of the
per-seed values (e.g. per-seed paired means), with ``n_seeds - 1`` degrees of freedom. It is chosen
over a hierarchical bootstrap because it is exact when the per-seed means are normal, valid for any
number of seeds >= 2, and the per-seed paired mean already contains the task-level noise, so
nothing is lost by not resampling tasks. A bootstrap over 2-5 seeds under-covers: it cannot learn
the seed variance from so few seeds and treats the observed spread as the truth.

Each estimate also carries ``unpaired``, the half-width of the old independent rule (square root
of the sum of squares of the inputs' half-widths), so both can be printed side by side. An input's
half-width there is its own interval computed as the paired rule computes it (across seeds, floor
included), so the two columns differ by the pairing alone.

:func:`tasks_needed` and :func:`seeds_needed` say how many tasks or seeds would make a comparison
decide (``|mean| > half_width``) with a given probability at the observed effect and spread.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from numbers import Real
from statistics import NormalDist
from types import MappingProxyType

import numpy as np

#: Below this, a denominator (:func:`ratio`) or an effect (planning) counts as zero.
_TINY = 1e-12


def normal_quantile(p: float) -> float:
    """The ``p`` quantile of the standard normal distribution (``0 < p < 1``)."""
    return NormalDist().inv_cdf(p)


#: The 97.5% normal quantile (1.959964), the task-level 95% interval's multiplier.
Z975 = normal_quantile(0.975)


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df >= 1`` degrees of freedom (``0 < p < 1``).

    Exact closed forms for ``df`` = 1 and 2, else Hill's algorithm (ACM 396, 1970), whose error
    is below 4e-5 for ``df >= 3`` (against scipy's ``t.ppf``, p from 0.55 to 0.9999: 3.1e-5 at
    worst; at p = 0.975 below 3e-6).
    """
    if not 0 < p < 1:
        raise ValueError(f"a quantile needs 0 < p < 1, got {p}")
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    if p == 0.5:
        return 0.0
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p)))
    n = float(df)
    two_tail = 2 * (1 - p)
    a = 1 / (n - 0.5)
    b = 48 / (a * a)
    c = ((20700 * a / b - 98) * a - 16) * a + 96.36
    d = ((94.5 / (b + c) - 3) / b + 1) * math.sqrt(a * math.pi / 2) * n
    y = (d * two_tail) ** (2 / n)
    if y > 0.05 + a:  # asymptotic inverse expansion about the normal
        x = normal_quantile(two_tail / 2)
        y = x * x
        if n < 5:
            c += 0.3 * (n - 4.5) * (x + 0.6)
        c = (((0.05 * d * x - 5) * x - 7) * x - 2) * x + b + c
        y = (((((0.4 * y + 6.3) * y + 36) * y + 94.5) / c - y - 3) / b + 1) * x
        y = math.expm1(a * y * y)
    else:  # far tail
        y = (
            (1 / (((n + 6) / (n * y) - 0.089 * d - 0.822) * (n + 2) * 3) + 0.5 / (n + 4)) * y - 1
        ) * (n + 1) / (n + 2) + 1 / y
    return math.sqrt(n * y)


class _IndependentKey:
    """The key of an :meth:`Estimate.independent` term: equal only to the key of another
    independent estimate given the same ``key``; fresh (equal to nothing else) without one."""

    _count = itertools.count()

    def __init__(self, key: Hashable | None = None) -> None:
        self._id = (key, next(self._count) if key is None else None)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _IndependentKey) and self._id == other._id

    def __hash__(self) -> int:
        return hash(("independent", self._id))

    def __repr__(self) -> str:
        key, fresh = self._id
        return f"independent#{fresh}" if key is None else f"independent({key!r})"


def _is_number(x: object) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Estimate:
    """A mean with what its uncertainty is made of.

    ``terms`` maps a sampling unit key to the per-unit influence values (a tuple of floats, one
    per task or per seed, centred: the contribution of each unit to the estimate's deviation from
    its mean). Estimates that share a key must list the same units in the same order. ``df`` maps
    the same keys to degrees of freedom for seed-level keys (absent: task-level, normal quantile).
    ``unpaired`` is the half-width the old independent rule gives (sqrt of sum of squares of the
    inputs' half-widths), carried along so both can be printed side by side. All in the units of
    ``mean``.
    """

    mean: float
    terms: Mapping[Hashable, tuple[float, ...]] = field(compare=False)
    df: Mapping[Hashable, int] = field(compare=False)
    unpaired: float
    floors: Mapping[Hashable, tuple[float, ...]] = field(default_factory=dict, compare=False)

    #: numpy defers to this class's operators (``np.float64(2) * e`` is an Estimate).
    __array_ufunc__ = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", float(self.mean))
        terms = {k: tuple(float(v) for v in vs) for k, vs in self.terms.items()}
        object.__setattr__(self, "terms", _frozen(terms))
        object.__setattr__(self, "df", _frozen({k: int(v) for k, v in self.df.items()}))
        object.__setattr__(self, "unpaired", float(self.unpaired))
        floors = {k: tuple(float(v) for v in vs) for k, vs in self.floors.items()}
        object.__setattr__(self, "floors", _frozen(floors))
        stray = [k for k in self.df if k not in self.terms]
        if stray:
            raise ValueError(f"degrees of freedom for keys without terms: {stray}")

    # -- constructors ------------------------------------------------------------------------------

    @classmethod
    def of_units(
        cls,
        values: Sequence[float],
        key: Hashable,
        *,
        seed_level: bool = False,
        within: Mapping[Hashable, Sequence[float]] | None = None,
    ) -> Estimate:
        """The mean of per-unit ``values`` (n >= 1, one per task or per seed) under ``key``.

        ``seed_level``: the units are seeds, the interval is Student-t with ``n - 1`` degrees of
        freedom (one seed: an infinite half-width). ``within``: per seed, a key of its tasks and
        their scores (the seed's value is their mean): the variance across seeds is then never
        taken below what the tasks alone give (:meth:`variance`).
        """
        x = np.asarray(values, dtype=float).ravel()
        if x.size == 0:
            raise ValueError(f"an estimate needs at least one unit, got none for {key!r}")
        mean = float(x.mean())
        df = {key: x.size - 1} if seed_level else {}
        floors = {}
        for sub, scores in (within or {}).items():  # seed i's tasks: its share of the mean
            y = np.asarray(scores, dtype=float).ravel()
            floors[(key, sub)] = tuple(((y - y.mean()) / x.size).tolist())
        own = cls(mean, {key: tuple((x - mean).tolist())}, df, 0.0, floors)
        # ``unpaired`` starts as the row's own interval, floor included: the two rules then
        # differ by the pairing alone, and a row whose seeds agree by chance is not exact.
        return replace(own, unpaired=own.half_width())

    @classmethod
    def constant(cls, x: float) -> Estimate:
        """A number known exactly: no terms, zero half-width."""
        return cls(float(x), {}, {}, 0.0)

    @classmethod
    def independent(cls, mean: float, ci95: float, key: Hashable | None = None) -> Estimate:
        """A mean known only by its task-level 95% half-width ``ci95`` (e.g. an old results row).

        Represented by a 2-unit term ``(+s, -s)`` with ``s = ci95 / 1.959964``, whose variance
        ``(s^2 + s^2) / (2 * 1)`` is ``s^2``, so ``half_width()`` gives ``ci95`` back. The term's
        key is fresh, or when ``key`` is given, shared with the other independent estimates given
        that key (the same, fully correlated quantity, e.g. the same old row used twice): it never
        pairs with :meth:`of_units` terms, and :func:`tasks_needed` does not scale it.
        """
        if not ci95 >= 0:
            raise ValueError(f"a half-width must be >= 0, got {ci95}")
        s = float(ci95) / Z975
        return cls(float(mean), {_IndependentKey(key): (s, -s)}, {}, ci95)

    # -- arithmetic --------------------------------------------------------------------------------

    def _combine(self, other: Estimate, sign: float) -> Estimate:
        terms = dict(self.terms)
        for key, vs in other.terms.items():
            if key in terms:
                if len(terms[key]) != len(vs):
                    raise ValueError(
                        f"estimates under key {key!r} have {len(terms[key])} and {len(vs)} units: "
                        "the same key must be the same units in the same order"
                    )
                terms[key] = tuple((np.asarray(terms[key]) + sign * np.asarray(vs)).tolist())
            else:
                terms[key] = tuple(sign * v for v in vs)
        df = dict(self.df)
        for key, d in other.df.items():
            df[key] = min(d, df.get(key, d))
        unpaired = math.hypot(self.unpaired, other.unpaired)
        floors = _added(self.floors, other.floors, sign)
        return Estimate(self.mean + sign * other.mean, terms, df, unpaired, floors)

    def _shift(self, c: float) -> Estimate:
        return Estimate(self.mean + c, self.terms, self.df, self.unpaired, self.floors)

    def _scale(self, c: float) -> Estimate:
        terms = {k: tuple(c * v for v in vs) for k, vs in self.terms.items()}
        floors = {k: tuple(c * v for v in vs) for k, vs in self.floors.items()}
        return Estimate(self.mean * c, terms, self.df, abs(c) * self.unpaired, floors)

    def __add__(self, other: Estimate | float) -> Estimate:
        if isinstance(other, Estimate):
            return self._combine(other, 1.0)
        if _is_number(other):
            return self._shift(float(other))
        return NotImplemented

    __radd__ = __add__

    def __sub__(self, other: Estimate | float) -> Estimate:
        if isinstance(other, Estimate):
            return self._combine(other, -1.0)
        if _is_number(other):
            return self._shift(-float(other))
        return NotImplemented

    def __rsub__(self, other: float) -> Estimate:
        if _is_number(other):
            return self._scale(-1.0)._shift(float(other))
        return NotImplemented

    def __neg__(self) -> Estimate:
        return self._scale(-1.0)

    def __mul__(self, c: float) -> Estimate:
        if _is_number(c):
            return self._scale(float(c))
        return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, c: float) -> Estimate:
        """Division by a number; for a ratio of two estimates use :func:`ratio`."""
        if _is_number(c):
            return self._scale(1.0 / float(c))
        return NotImplemented

    # -- reading -----------------------------------------------------------------------------------

    def variance(self) -> float:
        """Variance of ``mean`` (units of mean squared): over keys, ``sum(v^2) / (n (n - 1))``.

        A seed-level key with ``floors`` (its seeds' tasks, :meth:`of_units` ``within``) counts
        at least the variance its seeds' tasks give: a seed's value is a mean over tasks, so its
        variance is at least that mean's task-level variance, and a few seeds can by chance agree
        (two seeds with the same difference give a zero spread, and a zero-width interval)."""
        floor: dict[Hashable, float] = {}
        for (key, _), vs in self.floors.items():
            floor[key] = floor.get(key, 0.0) + _unit_variance(vs)
        return math.fsum(
            max(_unit_variance(vs), floor.get(key, 0.0)) for key, vs in self.terms.items()
        )

    def quantile(self) -> float:
        """The 97.5% multiplier: Student-t with the smallest seed-level df present; without a
        seed-level key, Student-t with the Welch-Satterthwaite df of the task-level keys (a key
        of n tasks has n - 1; :meth:`independent` terms count as known, infinite df).

        Taking the smallest df for the whole variance is conservative when seed-level and
        task-level (or several seed-level) terms are mixed. A seed-level key of one seed (df 0)
        gives infinity: one seed says nothing about the seed variance.
        """
        if self.df:
            df = min(self.df.values())
            return math.inf if df < 1 else t_quantile(0.975, df)
        parts = [
            (_unit_variance(vs), len(vs) - 1)
            for key, vs in self.terms.items()
            if not isinstance(key, _IndependentKey)
        ]
        total = self.variance()
        spread = math.fsum(v * v / d for v, d in parts if d >= 1)
        if not math.isfinite(total) or total <= 0 or spread <= 0:
            return Z975
        return t_quantile(0.975, max(1.0, total * total / spread))

    def half_width(self) -> float:
        """The 95% half-width, in the units of ``mean``: ``quantile() * sqrt(variance())``."""
        q = self.quantile()
        sd = math.sqrt(self.variance())
        return math.inf if math.isinf(q) else q * sd

    def n_units(self) -> dict[Hashable, int]:
        """The number of units (tasks, seeds) of each key."""
        return {k: len(vs) for k, vs in self.terms.items()}


def _unit_variance(vs: Sequence[float]) -> float:
    """``sum(v^2) / (n (n - 1))``: the variance of a mean of ``n`` units with centred values;
    infinite for one unit (its spread is unknown, not zero)."""
    n = len(vs)
    return math.fsum(v * v for v in vs) / (n * (n - 1)) if n >= 2 else math.inf


def _added(
    a: Mapping[Hashable, tuple[float, ...]], b: Mapping[Hashable, tuple[float, ...]], sign: float
) -> dict[Hashable, tuple[float, ...]]:
    """``a + sign * b`` key by key (the same key: the same units, element-wise)."""
    out = dict(a)
    for key, vs in b.items():
        if key in out:
            if len(out[key]) != len(vs):
                raise ValueError(
                    f"estimates under key {key!r} have {len(out[key])} and {len(vs)} units"
                )
            out[key] = tuple((np.asarray(out[key]) + sign * np.asarray(vs)).tolist())
        else:
            out[key] = tuple(sign * v for v in vs)
    return out


def ratio(num: Estimate, den: Estimate) -> Estimate | None:
    """``num / den`` by the delta method; None when ``|den.mean| < 1e-12``.

    Influence values ``(IF_num - r * IF_den) / den`` with ``r = num / den`` (terms of the same key
    pair); ``unpaired`` is the first-order independent rule ``sqrt(u_num^2 + r^2 u_den^2) / |den|``.
    """
    if abs(den.mean) < _TINY:
        return None
    r = num.mean / den.mean
    inf = num._scale(1 / den.mean)._combine(den._scale(r / den.mean), -1.0)
    unpaired = math.hypot(num.unpaired, r * den.unpaired) / abs(den.mean)
    return Estimate(r, inf.terms, inf.df, unpaired, inf.floors)


def across_seeds(per_seed_values: Sequence[float], key: Hashable = "seeds") -> Estimate:
    """The mean over seeds of per-seed values (>= 2 seeds), with its Student-t interval.

    ``t(0.975, n - 1) * std / sqrt(n)``; estimates sharing ``key`` pair seed by seed, so the
    values must come from the same seeds in the same order (give another key otherwise).
    """
    if len(per_seed_values) < 2:
        raise ValueError(f"an interval across seeds needs >= 2 seeds, got {len(per_seed_values)}")
    return Estimate.of_units(per_seed_values, key, seed_level=True)


def tasks_needed(estimate: Estimate, power: float = 0.8) -> int | None:
    """Tasks per split with which the paired test decides (``|mean| > half_width``) with
    probability ``power`` at the observed effect and variance.

    The task-level keys (no df, not :meth:`Estimate.independent`) have their n scaled by ``k``
    with ``(z_0.975 + z_power)^2 (V_tasks / k + V_rest) = mean^2``, ``m = ceil(k * max n)``;
    without seed-level keys ``m`` then grows until Student's t with ``m - 1`` df, the interval's
    own quantile (:meth:`Estimate.quantile`), meets the same condition. Returns ``m`` (at least
    2), which may be below the current n where seed-level keys set the interval: callers
    compare. None when the mean is 0
    (``|mean| < 1e-12``), there is no task-level key, or the other terms alone are too wide to
    ever decide.
    """
    tasks = [
        k for k in estimate.terms if k not in estimate.df and not isinstance(k, _IndependentKey)
    ]
    if not math.isfinite(estimate.mean) or abs(estimate.mean) < _TINY or not tasks:
        return None
    task_part = Estimate(0.0, {k: estimate.terms[k] for k in tasks}, {}, 0.0)
    v_tasks = task_part.variance()
    v_rest = estimate.variance() - v_tasks
    if not (math.isfinite(v_tasks) and math.isfinite(v_rest)):
        return None
    room = (estimate.mean / (Z975 + normal_quantile(power))) ** 2 - v_rest
    if room <= 0:
        return None
    k = v_tasks / room
    n = max(len(estimate.terms[key]) for key in tasks)
    m = max(2, math.ceil(k * n - 1e-9))
    if estimate.df:
        return m
    target = estimate.mean**2
    while (t_quantile(0.975, m - 1) + t_quantile(power, m - 1)) ** 2 * (
        v_tasks * n / m + v_rest
    ) > target:
        m += 1
    return m


def seeds_needed(
    per_seed_differences: Sequence[float],
    power: float = 0.8,
    max_seeds: int = 1000,
    *,
    floor_sd: float = 0.0,
) -> int | None:
    """The fewest seeds m >= 2 with ``(t_0.975(m-1) + t_power(m-1)) * s / sqrt(m) <= |mean|``.

    ``s``: the standard deviation (ddof 1) of the given per-seed values (>= 2 of them), or
    ``floor_sd`` where larger: the per-seed spread the interval used (``sqrt(variance * n)``
    of an estimate whose floor, :meth:`Estimate.variance`, lifted it), so that the plan is made
    with the spread that left the comparison undecided, and names more seeds than it has. None
    when the mean is 0 (``|mean| < 1e-12``), ``s`` is 0 (below 1e-12 times the mean: identical
    values and no floor), or more than ``max_seeds`` would be needed.
    """
    x = np.asarray(per_seed_differences, dtype=float).ravel()
    if x.size < 2:
        raise ValueError(f"planning seeds needs >= 2 per-seed values, got {x.size}")
    mean = abs(float(x.mean()))
    s = max(float(x.std(ddof=1)), float(floor_sd))
    if not (math.isfinite(mean) and math.isfinite(s)) or mean < _TINY or s <= 1e-12 * mean:
        return None
    for m in range(2, max_seeds + 1):
        if (t_quantile(0.975, m - 1) + t_quantile(power, m - 1)) * s / math.sqrt(m) <= mean:
            return m
    return None
