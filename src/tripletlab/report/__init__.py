"""Figures and run reports: PNG plots (:mod:`.plots`) and ``report.md`` (:mod:`.markdown`)."""
