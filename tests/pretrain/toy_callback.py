"""A callback of the tests' own (``tests/pretrain/test_callbacks.py`` adds it with one entry,
``+trainer.callbacks.steps=tests.pretrain.toy_callback:StepCounter``): after every step it logs the
step and the samples consumed so far. Nothing else in the project names it."""

from pretrain.callbacks import Callback


class StepCounter(Callback):
    interval = 1

    def __call__(self, ctx, last: dict) -> None:
        ctx.logger.log({"kind": "steps", "step": ctx.step, "samples_consumed": ctx.samples_consumed})
