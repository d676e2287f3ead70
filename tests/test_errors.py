"""The command line prints the project's own errors as their message alone."""

from __future__ import annotations

import sys

import pytest
from kedro.io import DatasetError

from book_recommender.errors import TRACEBACK_ENV, install_excepthook
from book_recommender.params import ConfigurationError
from book_recommender.run_lock import RunLockedError


@pytest.fixture
def hooked(monkeypatch):
    """The project's excepthook over a recording stand-in for Kedro's."""
    calls = []
    monkeypatch.setattr(sys, "excepthook", lambda *args: calls.append(args))
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    install_excepthook()
    install_excepthook()  # a second session in the process: not wrapped twice
    return calls


def _raised(error: BaseException) -> tuple:
    try:
        raise error
    except BaseException as caught:  # noqa: BLE001
        return type(caught), caught, caught.__traceback__


def _wrapped(cause: BaseException) -> BaseException:
    """How Kedro reports a dataset's failure: its own error, raised from ours."""
    try:
        try:
            raise cause
        except BaseException as error:  # noqa: BLE001
            raise DatasetError("Failed while loading data from dataset X") from error
    except DatasetError as outer:
        return outer


def test_a_project_error_prints_its_message_without_the_traceback(hooked, capsys):
    error = RunLockedError("Another run is writing /p/data: pid 7 on vm")
    sys.excepthook(*_raised(error))
    printed = capsys.readouterr().err
    assert "RunLockedError: Another run is writing /p/data: pid 7 on vm" in printed
    assert TRACEBACK_ENV in printed
    assert "Traceback" not in printed
    assert hooked == []


def test_a_project_error_under_kedros_wrapper_is_the_one_printed(hooked, capsys):
    outer = _wrapped(ConfigurationError("columns.rating: expected a column"))
    sys.excepthook(type(outer), outer, outer.__traceback__)
    printed = capsys.readouterr().err
    assert "ConfigurationError: columns.rating: expected a column" in printed
    assert "Failed while loading" not in printed
    assert hooked == []


def test_any_other_error_keeps_its_traceback(hooked, capsys):
    error = _raised(KeyError("a bug"))
    sys.excepthook(*error)
    assert hooked == [error]
    assert capsys.readouterr().err == ""


def test_the_traceback_is_there_when_asked_for(hooked, monkeypatch):
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    error = _raised(RunLockedError("held"))
    sys.excepthook(*error)
    assert hooked == [error]
