"""Pretraining: the loop (:mod:`~omnipatch.train.engine`), its strategies, data, checkpoints,
monitors and loggers, and the run builder behind ``omnipatch pretrain``
(:mod:`~omnipatch.train.pretrain`).

Deliberately empty: importing ``omnipatch.train.checkpoint`` must not pull in the whole
pretraining stack (and with it an import loop); import the module you need.
"""
