"""Spark extraction of dialogue sessions from Pushshift Reddit dumps.

Kept free of heavy imports: Spark executors import this package and must not pull in torch.
"""
