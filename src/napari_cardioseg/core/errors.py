"""The one exception type that carries a message meant for the user."""


class CardiosegError(ValueError):
    """Bad input or a failed operation, with a one-line message a user can act on.

    The CLI prints the message and exits non-zero; widgets show it as a napari notification.
    """
