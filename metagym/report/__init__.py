"""The trade-off report: the lecture's claims about the three families of meta-learners
(black-box, non-parametric, gradient-based), measured on sinusoid regression, Omniglot and
meta-RL, in and out of distribution (``metagym report``; see docs/report.md).

- :mod:`metagym.report.plan`: the experiments and the report's budgets per profile.
- :mod:`metagym.report.claims`: the six claims' paired comparisons and verdict rules, and the
  compute-matched comparison (pure functions).
- :mod:`metagym.report.evidence`: results files -> :class:`~metagym.report.claims.Evidence`.
- :mod:`metagym.report.figures`, :mod:`metagym.report.render`: figures, report.md, report.html.
- :mod:`metagym.report.build`: :func:`report`, what the command runs.
"""

from metagym.report.build import report
from metagym.report.claims import Evidence, all_claims

__all__ = ["Evidence", "all_claims", "report"]
