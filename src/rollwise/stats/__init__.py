"""Pure statistics for judging a candidate against the stable version.

Modules, one job each:

* ``results``: result values (:class:`InferenceResult`, :class:`Interval`, :class:`Decision`);
* ``estimates``: asymptotically normal estimates, two-arm contrasts, z inference;
* ``proportions``: two-proportion z-test, Newcomb/Wald/Agresti-Caffo intervals, Wilson;
* ``means``: Welch's t-test from (n, mean, variance);
* ``ranks``: Mann-Whitney U with the Hodges-Lehmann shift, on samples or histograms;
* ``srm``: sample-ratio mismatch (chi-square and sequential Dirichlet-multinomial);
* ``bayes``: chance to beat control and expected loss (Beta-Binomial, normal means);
* ``sequential``: always-valid confidence sequences, e-values, time-uniform DKW;
* ``quantiles``: latency quantiles with Woodruff standard errors;
* ``drift``: PSI and Kolmogorov-Smirnov between output distributions;
* ``multiple``: Holm, Benjamini-Hochberg and Bonferroni adjustments;
* ``power``: sample sizes, power and durations, fixed and sequential;
* ``simulation``: Monte Carlo error rates under peeking (seeded by the caller).

Nothing here reads a clock or a global random source; functions that simulate take a
``numpy.random.Generator``.
"""

from rollwise.stats.results import Alternative, Decision, InferenceResult, Interval

__all__ = ["Alternative", "Decision", "InferenceResult", "Interval"]
