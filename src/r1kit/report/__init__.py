"""Reading a run back: the HTML report with its plots, the aha-moment tracker, alerts over the metrics."""

from r1kit.report.html import write_report, write_report_safely

__all__ = ["write_report", "write_report_safely"]
