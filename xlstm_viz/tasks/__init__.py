"""Synthetic tasks with readable token labels, used to train and explain the demo model."""

from xlstm_viz.tasks.mqar import MQARBatch, MQARTask, recall_accuracy

__all__ = ["MQARBatch", "MQARTask", "recall_accuracy"]
