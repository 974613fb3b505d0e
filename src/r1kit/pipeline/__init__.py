"""The four-stage R1 pipeline: the stage table, `r1kit pipeline`, cold-start data, rejection sampling,
quality filters, distillation and the Table 6 comparison."""
