"""The one exception type that user-facing entry points raise for bad input."""


class ExplorerError(ValueError):
    """A problem with the user's input or environment, stated in one sentence with its fix."""


class DataUnavailable(ExplorerError):
    """A dataset's files are not on this machine (or not where they were said to be) and could not
    be downloaded; the message says where to put them."""


class ConvergenceWarning(UserWarning):
    """A fit stopped before its gradient norm reached the requested tolerance."""


class Cancelled(Exception):
    """A job stopped because its user cancelled it."""


class AppraisalWarning(UserWarning):
    """An appraisal ran but its values deserve care (the reason is in the message)."""
