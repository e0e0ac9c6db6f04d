"""The test kit: plain-Python references of the stages (``reference``) and the in-process run of
extract's steps (``local``), imported by the tests and the benchmarks, never by the product."""
