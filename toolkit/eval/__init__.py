"""Evaluation of frozen embeddings."""

from omnipatch.eval.probe import cross_val_accuracy, knn_accuracy, knn_predict, linear_accuracy

__all__ = ["knn_accuracy", "knn_predict", "linear_accuracy", "cross_val_accuracy"]
