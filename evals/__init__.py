"""Evaluation for promptzip: public data sets, metrics, baselines, runners and reports."""
