"""Video cross-modal evaluation: exact CMC/mAP/mINP and fast-reid's DatasetEvaluator for both
retrieval directions."""

from .metrics import TrueMatchRanks, evaluate_vvi, summarize_ranks, true_match_ranks

__all__ = ["TrueMatchRanks", "evaluate_vvi", "summarize_ranks", "true_match_ranks"]
