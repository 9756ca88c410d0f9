"""The trade-off report: the lecture's claims about the three families of meta-learners
(black-box, non-parametric, gradient-based), measured on sinusoid regression, Omniglot and
meta-RL, in and out of distribution (``metagym report``; see docs/report.md).

- :mod:`metagym.report.plan`: the experiments and the report's budgets per profile.
- :mod:`metagym.report.evidence`: results files -> :class:`~metagym.report.comparisons.Evidence`.
- :mod:`metagym.report.comparisons`: evidence rows -> paired estimates and comparisons.
- :mod:`metagym.report.verdicts`: the verdict rules of a comparison and of a claim.
- :mod:`metagym.report.claims`: the six claims (pure functions of the evidence);
  :mod:`metagym.report.compute_matched`: the comparison at equal meta-training time;
  :mod:`metagym.report.intervals`: paired against unpaired half-widths over the claims.
- :mod:`metagym.report.figures`, :mod:`metagym.report.render`: figures, report.md, report.html.
- :mod:`metagym.report.build`: :func:`report`, what the command runs.
"""

from metagym.report.build import report
from metagym.report.claims import all_claims
from metagym.report.comparisons import Evidence

__all__ = ["Evidence", "all_claims", "report"]
