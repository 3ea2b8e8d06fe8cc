"""What every benchmark shares: arms x seeds as genint jobs reused by config hash (``arms``), and the
report's statistics, tables and sample figure (``report``)."""
