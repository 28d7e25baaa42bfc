"""Figures from outside rollwise: the I/O behind external gates (Prometheus, web).

The pure side (what a source is, how its answer is read, what verdict a reading gives)
lives in :mod:`rollwise.analysis.sources` and :mod:`rollwise.analysis.external`; this
package only fetches, off the request path and within a timeout.
"""
