"""Evaluation of twins and baselines against measured links (metrics, per-link tables, reports)."""
from rftwin.evaluate.metrics import abs_error_stats_db, cdf, male_db, mcs, mre, ssim

__all__ = ["abs_error_stats_db", "cdf", "male_db", "mcs", "mre", "ssim"]
