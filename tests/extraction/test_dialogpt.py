"""The released DialoGPT extractor's text form (extraction.sessions.dialogpt) and preset=dialogpt_released on real data."""

import collections
import json

import pyarrow.parquet as pq
import pytest
import zstandard

from extraction.sessions import dialogpt


@pytest.mark.parametrize("text, expected", [
    ("Hello, world!", "Hello , world !"),
    ("see http://example.com/x now", "see __url__ now"),
    ("(see:http://x.org)", "( see : __url__"),  # the word is cut where 'http' starts
    ("#tagged words stay #gone", "words stay"),
    ("b/c I w/o you j/k w/ me", "because I without you just kidding with me"),
    ("The URL of it", "The __url__ of it"),  # the extractor's placeholder dance turns the word URL into __url__
    ("tom &amp; jerry", "tom amp jerry"),  # on the text as the dump holds it
    ("naïve café\\n", "na ve caf n"),
    ("a\\b c", "ab c"),
    ("", ""),
])
def test_normalize(text, expected):
    assert dialogpt.normalize(text) == expected


def test_features_count_the_weight_token():
    f = dialogpt.features("1.0 1.0 yes")  # the weight "1.0" makes a third "1.0"
    assert f["word_repeat"] and f["n_words"] == 3
    assert not dialogpt.features("yes yes Yes")["word_repeat"]  # case-sensitive
    assert dialogpt.features("a " + "x" * 31)["long_word"] and not dialogpt.features("x" * 30)["long_word"]
    assert dialogpt.features("( a")["markup"] and dialogpt.features("SHOUTS")["shouting"]
    assert dialogpt.comment_words("one \\\\ two\tthree\\") == 3


def rebuilt_submissions(rc_path, out_path):
    """What the shared month's released output was made with: one submission per thread, with the
    number of comment lines of that thread as num_comments."""
    raw = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(open(rc_path, "rb")).read()
    counts, first = collections.Counter(), {}
    for line in raw.splitlines():
        try:
            c = json.loads(line)
        except ValueError:
            continue
        counts[c["link_id"]] += 1
        first.setdefault(c["link_id"], c)
    lines = [json.dumps({"id": link[3:], "title": "", "selftext": "", "num_comments": n, "subreddit": first[link].get("subreddit"),
                         "author": "op", "score": 1, "over_18": False, "created_utc": first[link]["created_utc"]})
             for link, n in counts.items()]
    out_path.write_bytes(zstandard.ZstdCompressor().compress(("\n".join(lines) + "\n").encode()))


@pytest.mark.slow
def test_released_preset_gives_exactly_the_released_instances(spark, real_dump, tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from reddit_pretrain import CONF_DIR
    from reddit_pretrain.hydra_job import register_schemas
    from extraction.sessions.job import ExtractConfig, run_extract
    from extraction.ingest.job import IngestConfig, run_ingest

    rebuilt_submissions(real_dump, tmp_path / "RS_2005-12.zst")
    run_ingest(IngestConfig(inputs=[str(real_dump), str(tmp_path / "RS_2005-12.zst")], output=str(tmp_path / "i")), spark)
    register_schemas("extract", ExtractConfig)
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = OmegaConf.to_object(compose("extract", overrides=[
            "preset=dialogpt_released", f"input={tmp_path}/i", f"output={tmp_path}/x", "split.valid_fraction=0", "split.test_fraction=0"]))
    run_extract(cfg, spark)
    got = {(r["session_id"], r["num_turns"]) for r in pq.read_table(tmp_path / "x" / "sessions").to_pylist()}
    released = set()
    for line in (real_dump.parent / "RC_2005-12.dialogpt_released.tsv").read_text().splitlines():
        header, source, _ = line.split("\t")
        released.add((header.split(",")[2][len("t1_"):], len(source.split(" EOS ")) + 1))
    assert len(released) == 20 and got == released
    # The sessions keep the clean text: HTML unescaped, nothing normalised.
    sessions = pq.read_table(tmp_path / "x" / "sessions").to_pylist()
    assert all("__url__" not in t for s in sessions for t in s["turns"])
