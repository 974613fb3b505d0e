"""Evaluation as the R1 paper reports it: benchmarks, prompt styles, pass@1 over k samples, pass@k, cons@k."""
