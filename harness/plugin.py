"""The ditto pytest plugin (options, fixtures, regression module). Filled in by the harness."""
