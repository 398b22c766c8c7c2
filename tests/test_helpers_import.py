"""The test helpers exist once, whichever name a test imports them by."""
import importlib

import pytest

import tests.conftest as conftest


@pytest.mark.parametrize("name", conftest.HELPERS)
def test_a_helper_imported_by_its_short_name_is_the_package_module(name):
    full = importlib.import_module("tests." + name)
    short = importlib.import_module(name)
    assert short is full
    assert full.__spec__.name == "tests." + name and full.__name__ == "tests." + name


def test_the_fixtures_and_a_short_name_import_share_one_subscriber_class():
    from mosquitto import Subscriber
    assert Subscriber is conftest.Subscriber
