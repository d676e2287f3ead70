"""Book Recommender"""

__version__ = "0.1"
