"""promptworth: how many data points is a prompt worth?"""

__version__ = "0.1.0"
