"""The roof: what drives both sides, and nothing imports.

    reddit_pretrain_app.{command, pipeline, registry, synth}   the roof: the CLI, the pipeline, the registry, the demo's month
         |                  |
    extraction (Spark)   pretrain (torch, DeepSpeed)            never import each other
         |                  |
    reddit_pretrain.{shards, documents, storage, layout, errors, hydra_job}   the shared base: imports neither side

* ``registry``: every command and every pipeline stage, declared once (the CLI, the pipeline,
  ``jobs/spark_driver.py`` and the configuration reference read it).
* ``command``: the ``reddit-pretrain`` command.
* ``pipeline``: every stage in one command, a loop over the registry's stages.
* ``synth``: a generated Pushshift month for the demo and the tests (written with the data side's
  zstd writer; its topics are what the demo's on-topic check asks about).

``tests/test_layout.py`` holds the floors to this: no module below imports this package.
"""
