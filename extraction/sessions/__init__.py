"""Stage 2, extract: ingested comments -> dialogue sessions, filtered, split and reported.

* ``reddit_threads``: the work of one range of Reddit threads (trees, chains, turn rules, features) and the corpus
  steps between buckets (exact and near duplicates, bland words).
* ``chains``: root-to-leaf paths and the split of a session by its thread.
* ``filters``: every rule, declared once; ``features``: the rules' features, vectorised.
* ``language``, ``privacy``, ``neardup``, ``classifier``: the language, PII, near-duplicate and
  user-classifier rules; ``dialogpt``: the released extractor's normalisation.
* ``report``: the extract report (counts per rule, figures); ``export_dataset``: the sessions as a
  Hugging Face dataset folder.
* ``job``: the extract job (``reddit-pretrain extract``).
"""

from reddit_pretrain.errors import UserError


class ExtractError(UserError, RuntimeError):
    """A clear, user-facing reason the extract job stopped (raised by the job and its report)."""
