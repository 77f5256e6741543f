"""Customer segmentation that runs itself: import, fit K-Means, publish versioned segments.

The library never commits on its own: functions take a connection and the pipeline
(`segmentation.pipeline`) owns every transaction.
"""

__version__ = "0.1.0"
