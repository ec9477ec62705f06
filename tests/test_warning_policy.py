"""The suite's warning policy (pyproject.toml): a warning raised from the project's own code, or
a FutureWarning from anywhere, is an error here, so it fails CI instead of reaching a user."""

from __future__ import annotations

import warnings

import pytest


def test_a_warning_from_our_code_is_an_error():
    with pytest.raises(UserWarning, match="probe"):
        warnings.warn("probe", UserWarning, stacklevel=1)


def test_a_future_warning_from_a_library_is_an_error():
    import transformers.utils.deprecation as deprecation

    @deprecation.deprecate_kwarg("old", "99.0.0", new_name="new")
    def library_function(new=None):
        return new

    with pytest.raises(FutureWarning, match="old"):
        library_function(old=1)
