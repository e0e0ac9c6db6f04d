"""Stage 1, ingest: Pushshift dumps -> Parquet tables of comments and submissions, by month and
thread bucket, with the rejected records beside them.

* ``dumps``: reading zstd NDJSON dumps (long windows, line blocks, a file split into pieces).
* ``records``: one JSON line -> one typed row, across the years' field drift; what is set aside and why.
* ``job``: the ingest job (``reddit-pretrain ingest``): Spark tasks per file piece, the staging
  folder, the atomic commit of ``<output>/`` (its layout: ``reddit_pretrain.layout``).
"""
