"""Stage 1, ingest: Pushshift dumps -> Parquet tables of comments and submissions, by month and
thread bucket, with the rejected records beside them.

* ``dumps``: reading zstd NDJSON dumps (long windows, line blocks, a file split into pieces).
* ``records``: one JSON line -> one typed row, across the years' field drift; what is set aside and why.
* ``pieces``: one big dump parsed by several tasks, one decompression handed on between them.
* ``writer``: a task's Parquet files by month and piece of the thread hash space.
* ``job``: the ingest job (``reddit-pretrain ingest``): Spark tasks per file piece, through the stage
  contract (``extraction.spark.stage``), the commit of ``<output>/`` (its layout: ``reddit_pretrain.layout``).
"""

from reddit_pretrain.errors import UserError


class IngestError(UserError, RuntimeError):
    """A clear, user-facing reason the ingest job stopped."""
