"""A full filesystem for the tests of what the harness does when a write fails half way."""
import os


class FullDisk:
    """A file that takes half of what is written, then reports a full disk."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, text):
        self.f.write(text[: len(text) // 2])
        raise OSError(28, "No space left on device")


class FullOs:
    """A module's view of `os` whose fdopen gives FullDisk files."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def fdopen(fd, *args, **kwargs):
        return FullDisk(os.fdopen(fd, *args, **kwargs))
