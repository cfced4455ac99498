"""A user's own module beside the tests: not installed, so it must travel by value."""


def triple(x):
    return 3 * x
