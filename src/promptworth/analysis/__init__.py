"""Stage 3, analysis: run records to a table, the data advantage, costs, tables and figures."""
