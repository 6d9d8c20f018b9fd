"""Evaluation with labels: cluster accuracy, NMI, a reference classifier."""

from __future__ import annotations

import numpy as np


def cluster_accuracy(labels, clusters, k: int) -> float:
    """Best one-to-one matching of clusters to labels (Hungarian algorithm);
    with more clusters than classes each class takes its best cluster and the
    remaining clusters count as wrong."""
    from scipy.optimize import linear_sum_assignment
    m = np.zeros((k, 10))
    for c, y in zip(clusters, labels):
        m[c, y] += 1
    rows, cols = linear_sum_assignment(-m)
    return float(m[rows, cols].sum() / len(labels))


def majority_accuracy(train_labels, train_clusters, labels, clusters, k: int) -> float:
    """Many-to-one: each cluster takes the majority label of its training members."""
    mapping = np.zeros(k, int)
    for c in range(k):
        members = train_labels[train_clusters == c]
        mapping[c] = np.bincount(members, minlength=10).argmax() if len(members) else 0
    return float(np.mean(mapping[clusters] == labels))


def nmi(labels, clusters) -> float:
    from sklearn.metrics import normalized_mutual_info_score
    return float(normalized_mutual_info_score(labels, clusters))


class DigitClassifier:
    """Logistic regression on the real training split: labels generated samples."""

    def __init__(self, x_train, y_train) -> None:
        from sklearn.linear_model import LogisticRegression
        self.clf = LogisticRegression(max_iter=3000, C=1.0).fit(np.asarray(x_train), y_train)

    def accuracy(self, x, y) -> float:
        return float(self.clf.score(np.asarray(x), y))

    def sample_quality(self, samples) -> dict:
        """Share of samples labelled with confidence >= 0.9, and the entropy
        (bits) of the predicted class histogram (log2 10 = 3.32 is uniform)."""
        p = self.clf.predict_proba(np.asarray(samples))
        hist = np.bincount(p.argmax(1), minlength=10) / len(p)
        ent = -np.sum(hist[hist > 0] * np.log2(hist[hist > 0]))
        return {"confident_share": float(np.mean(p.max(1) >= 0.9)), "class_entropy_bits": float(ent)}

    def predict(self, x):
        return self.clf.predict(np.asarray(x))
