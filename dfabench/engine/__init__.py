"""The credit-assignment engine: feedback markers, the router and the feedback matrices."""
from .feedback import FeedbackMatrices, FeedbackOptions
from .points import FeedbackCut, FeedbackOutput, FeedbackPoint, feedback_outputs, feedback_points
from .router import Router

__all__ = [
    "FeedbackCut",
    "FeedbackMatrices",
    "FeedbackOptions",
    "FeedbackOutput",
    "FeedbackPoint",
    "Router",
    "feedback_outputs",
    "feedback_points",
]
