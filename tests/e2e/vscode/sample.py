import math


def area_of_circle(radius):
    """Return the area of a circle."""
    return math.pi * radius * radius


