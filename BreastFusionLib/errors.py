"""Errors raised for input a user can fix; their message names the file, row, column or value."""


class UserInputError(ValueError):
    """Bad input from a user (file, manifest row, parameter). The CLI prints it without a traceback."""
